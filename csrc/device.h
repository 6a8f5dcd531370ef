// Everything the launchers ask the CUDA runtime: the device (made current for a launch), its limits
// (queried once per device and cached), and whether the pointers and the stream belong to it.
// Failures of the runtime itself (no GPU, no driver) raise RuntimeError; a pointer or stream of the
// wrong kind or device raises ValueError naming it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "plan.h"

namespace crfiqa {

void cuda_check(cudaError_t err, const std::string& what);

// Makes ``device`` current for the scope, restoring the previous device; ValueError when no such
// device is visible.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  int current_ = 0;
};

// The limits the plans need, read from the runtime on the first call for ``device`` and cached.
DeviceLimits device_limits(int device);

// Every pointer is device (or managed) memory of ``device``: one cudaPointerGetAttributes each.
void check_all_on_device(const std::vector<std::pair<std::string, int64_t>>& pointers, int device);

// A stream of another device would run the kernel there, on memory of this one.
void check_stream_device(cudaStream_t stream, int device);

// True when ``device`` exists and the binary holds an image of every kernel for it; never raises
// for a missing device or driver (false then).
bool kernel_image_available(int device);

}  // namespace crfiqa
