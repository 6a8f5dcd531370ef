#include "device.h"

#include <map>
#include <mutex>
#include <stdexcept>

#include "checks.h"
#include "launch.h"

namespace crfiqa {
namespace {

// The visible devices do not change during a process: counted once.
int visible_devices() {
  static const int count = [] {
    int n = 0;
    cuda_check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    return n;
  }();
  return count;
}

void check_on_device(const std::string& name, int64_t ptr, int device) {
  cudaPointerAttributes attributes;
  const void* address = reinterpret_cast<const void*>(static_cast<uintptr_t>(ptr));
  const cudaError_t err = cudaPointerGetAttributes(&attributes, address);
  if (err == cudaErrorInvalidValue) {
    cudaGetLastError();  // not sticky: clear it
    value_error(name + ": not a pointer the CUDA runtime knows");
  }
  cuda_check(err, "cudaPointerGetAttributes(" + name + ")");
  if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) {
    value_error(name + ": not device memory (host or unregistered pointer)");
  }
  if (attributes.device != device) {
    value_error(name + ": memory of device " + std::to_string(attributes.device) + ", expected device " +
                std::to_string(device));
  }
}

}  // namespace

void cuda_check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) + ": " +
                             cudaGetErrorString(err));
  }
}

DeviceScope::DeviceScope(int device) {
  if (device >= visible_devices()) {
    value_error("device: index " + std::to_string(device) + " but only " + std::to_string(visible_devices()) +
                " CUDA device(s) are visible");
  }
  cuda_check(cudaGetDevice(&previous_), "cudaGetDevice");
  if (device != previous_) cuda_check(cudaSetDevice(device), "cudaSetDevice");
  current_ = device;
}

DeviceScope::~DeviceScope() {
  if (current_ != previous_) cudaSetDevice(previous_);
}

DeviceLimits device_limits(int device) {
  static std::mutex mutex;
  static std::map<int, DeviceLimits> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto found = cache.find(device);
  if (found != cache.end()) return found->second;
  if (device >= visible_devices()) {
    value_error("device: index " + std::to_string(device) + " but only " + std::to_string(visible_devices()) +
                " CUDA device(s) are visible");
  }
  int multiprocessors = 0, shared = 0;
  cuda_check(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(multiprocessors)");
  cuda_check(cudaDeviceGetAttribute(&shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
             "cudaDeviceGetAttribute(shared memory)");
  const DeviceLimits limits{multiprocessors, shared};
  cache.emplace(device, limits);
  return limits;
}

void check_all_on_device(const std::vector<std::pair<std::string, int64_t>>& pointers, int device) {
  for (const auto& [name, ptr] : pointers) check_on_device(name, ptr, device);
}

void check_stream_device(cudaStream_t stream, int device) {
#if CUDART_VERSION >= 12080
  if (stream == nullptr) return;  // the legacy default stream of the current device
  int stream_device = -1;
  cuda_check(cudaStreamGetDevice(stream, &stream_device), "cudaStreamGetDevice");
  if (stream_device != device) {
    value_error("stream: belongs to device " + std::to_string(stream_device) + ", expected device " +
                std::to_string(device));
  }
#else
  (void)stream;
  (void)device;
#endif
}

bool kernel_image_available(int device) {
  check_device_index(device);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device >= count) {
    cudaGetLastError();
    return false;
  }
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  const bool ok = probe_forward_partials() == cudaSuccess && probe_backward() == cudaSuccess;
  cudaGetLastError();
  cudaSetDevice(previous);
  return ok;
}

}  // namespace crfiqa
