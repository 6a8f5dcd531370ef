// crfiqa_kernels._C: pybind11 launchers of the CUDA kernels.
//
// Python passes device pointers as integers with their dtype codes, sizes and strides, the device
// index and a CUDA stream handle (torch.cuda.current_stream().cuda_stream); nothing here knows
// torch, the module links the CUDA runtime only. Every launcher validates its arguments in two
// stages:
//   1. pure argument checks (dtype codes, sizes, strides, null and misaligned pointers, splits):
//      ValueError naming the argument, before any CUDA call;
//   2. device checks through the runtime (the device exists, every pointer is device memory of that
//      device): ValueError for a wrong pointer, RuntimeError when the runtime itself fails (no GPU,
//      no driver).
// A failed launch raises RuntimeError with the CUDA error string. Launches are asynchronous: an
// error during the kernel's execution surfaces at the next synchronizing call, as for any CUDA op.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime_api.h>

#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "launch.h"
#include "params.h"

namespace py = pybind11;

namespace crfiqa {
namespace {

// Largest batch / class / embedding size: tile starts (index + tile size) must stay inside int.
constexpr int64_t kMaxExtent = INT_MAX - 4096;

struct MatrixArg {
  int64_t ptr;
  int dtype;
  int64_t rows, cols, row_stride, col_stride;
};

struct VectorArg {
  int64_t ptr;
  int dtype;
  int64_t length;
};

[[noreturn]] void value_error(const std::string& message) { throw py::value_error(message); }

const char* dtype_name(int dtype) {
  switch (dtype) {
    case kFloat32: return "float32";
    case kFloat16: return "float16";
    case kBFloat16: return "bfloat16";
    case kInt64: return "int64";
    default: return "unknown";
  }
}

int64_t element_size(int dtype) {
  switch (dtype) {
    case kFloat32: return 4;
    case kFloat16:
    case kBFloat16: return 2;
    case kInt64: return 8;
    default: return 0;
  }
}

void check_dtype_code(const std::string& name, int dtype) {
  if (element_size(dtype) == 0) {
    std::ostringstream msg;
    msg << name << ": unknown dtype code " << dtype << " (expected " << kFloat32 << " float32, " << kFloat16
        << " float16, " << kBFloat16 << " bfloat16 or " << kInt64 << " int64)";
    value_error(msg.str());
  }
}

void check_pointer(const std::string& name, int64_t ptr, int dtype) {
  if (ptr == 0) value_error(name + ": null pointer");
  if (ptr < 0) value_error(name + ": negative pointer value " + std::to_string(ptr));
  if (ptr % element_size(dtype) != 0) {
    value_error(name + ": pointer " + std::to_string(ptr) + " is not aligned to its " + dtype_name(dtype) +
                " elements (" + std::to_string(element_size(dtype)) + " bytes)");
  }
}

void check_extent(const std::string& what, int64_t value) {
  if (value < 1) value_error(what + " must be ≥ 1, got " + std::to_string(value));
  if (value > kMaxExtent) {
    value_error(what + " must be ≤ " + std::to_string(kMaxExtent) + ", got " + std::to_string(value));
  }
}

bool is_float_code(int dtype) { return dtype == kFloat32 || dtype == kFloat16 || dtype == kBFloat16; }

MatrixRef check_matrix(const std::string& name, const MatrixArg& m) {
  check_dtype_code(name, m.dtype);
  if (!is_float_code(m.dtype)) value_error(name + ": must be float32, float16 or bfloat16, got " + dtype_name(m.dtype));
  check_extent(name + ": rows", m.rows);
  check_extent(name + ": cols", m.cols);
  if (m.col_stride != 1) value_error(name + ": column stride must be 1, got " + std::to_string(m.col_stride));
  if (m.row_stride < m.cols) {
    value_error(name + ": row stride " + std::to_string(m.row_stride) + " is smaller than its " +
                std::to_string(m.cols) + " columns");
  }
  if (m.row_stride > INT64_MAX / (m.rows * element_size(m.dtype))) value_error(name + ": row stride too large");
  check_pointer(name, m.ptr, m.dtype);
  const int64_t bytes = element_size(m.dtype);
  const bool vector_ok = m.ptr % 16 == 0 && (m.row_stride * bytes) % 16 == 0;
  return {reinterpret_cast<const void*>(static_cast<uintptr_t>(m.ptr)), m.dtype, m.row_stride, vector_ok};
}

void check_vector(const std::string& name, const VectorArg& v, int dtype, int64_t length) {
  check_dtype_code(name, v.dtype);
  if (v.dtype != dtype) {
    value_error(name + ": must be " + dtype_name(dtype) + ", got " + dtype_name(v.dtype));
  }
  if (v.length != length) {
    value_error(name + ": length must be " + std::to_string(length) + ", got " + std::to_string(v.length));
  }
  check_pointer(name, v.ptr, v.dtype);
}

template <typename T>
T* vector_pointer(const VectorArg& v) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(v.ptr));
}

int policy_input_dtype(int policy) {
  switch (policy) {
    case kPolicyFloat16: return kFloat16;
    case kPolicyBFloat16: return kBFloat16;
    case kPolicyTf32:
    case kPolicy3xTf32: return kFloat32;
    default:
      value_error("policy: unknown code " + std::to_string(policy) + " (expected " + std::to_string(kPolicyFloat16) +
                  " float16, " + std::to_string(kPolicyBFloat16) + " bfloat16, " + std::to_string(kPolicyTf32) +
                  " tf32 or " + std::to_string(kPolicy3xTf32) + " 3xtf32)");
  }
}

MarginParams check_margin(const std::array<double, 4>& margin) {
  for (double x : margin) {
    if (!std::isfinite(x)) value_error("margin: (s, m1, m2, m3) must be finite");
  }
  if (margin[0] <= 0) value_error("margin: s must be positive, got " + std::to_string(margin[0]));
  return {static_cast<float>(margin[0]), static_cast<float>(margin[1]), static_cast<float>(margin[2]),
          static_cast<float>(margin[3])};
}

void check_device_index(int device) {
  if (device < 0) value_error("device: must be a CUDA device index ≥ 0, got " + std::to_string(device));
}

cudaStream_t check_stream(int64_t stream) {
  if (stream < 0) value_error("stream: must be a CUDA stream handle (≥ 0), got " + std::to_string(stream));
  return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(stream));
}

// Class tiles per split for ``splits`` splits of ``class_tiles`` tiles; every split non-empty.
int check_splits(int64_t splits, int class_tiles) {
  if (splits < 1 || splits > class_tiles) {
    value_error("splits: must lie in [1, " + std::to_string(class_tiles) + "] (the class tiles), got " +
                std::to_string(splits));
  }
  const int per_split = ceil_div(class_tiles, static_cast<int>(splits));
  if ((splits - 1) * per_split >= class_tiles) {
    value_error("splits: " + std::to_string(splits) + " splits of " + std::to_string(class_tiles) +
                " class tiles would leave the last one empty; use " +
                std::to_string(ceil_div(class_tiles, per_split)));
  }
  return per_split;
}

void check_grid(int64_t blocks) {
  if (blocks > INT_MAX) value_error("the launch grid (" + std::to_string(blocks) + " blocks) exceeds 2^31 - 1");
}

[[noreturn]] void cuda_failure(cudaError_t err, const std::string& what) {
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) + ": " +
                           cudaGetErrorString(err));
}

void cuda_check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) cuda_failure(err, what);
}

// Makes ``device`` current for the scope, restoring the previous device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    cuda_check(cudaGetDevice(&previous_), "cudaGetDevice");
    int count = 0;
    cuda_check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (device >= count) {
      value_error("device: index " + std::to_string(device) + " but only " + std::to_string(count) +
                  " CUDA device(s) are visible");
    }
    if (device != previous_) cuda_check(cudaSetDevice(device), "cudaSetDevice");
    current_ = device;
  }
  ~DeviceScope() {
    if (current_ != previous_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  int current_ = 0;
};

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

void check_all_on_device(const std::vector<std::pair<std::string, int64_t>>& pointers, int device) {
  for (const auto& [name, ptr] : pointers) check_on_device(name, ptr, device);
}

// A stream of another device would run the kernel there, on memory of this one.
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

// The operands shared by all kernels; sizes come from the matrices.
CosineOperands check_operands(int policy, const MatrixArg& e, const MatrixArg& weight, const VectorArg& w_inv_norm,
                              const VectorArg& labels) {
  const int e_dtype = policy_input_dtype(policy);
  const MatrixRef e_ref = check_matrix("e", e);
  if (e.dtype != e_dtype) {
    value_error(std::string("e: dtype ") + dtype_name(e.dtype) + " does not match the policy's " + dtype_name(e_dtype));
  }
  const MatrixRef w_ref = check_matrix("weight", weight);
  if (weight.cols != e.cols) {
    value_error("weight: " + std::to_string(weight.cols) + " columns but e has " + std::to_string(e.cols));
  }
  check_vector("w_inv_norm", w_inv_norm, kFloat32, weight.rows);
  check_vector("labels", labels, kInt64, e.rows);
  return {e_ref,
          w_ref,
          vector_pointer<const float>(w_inv_norm),
          vector_pointer<const int64_t>(labels),
          static_cast<int>(e.rows),
          static_cast<int>(weight.rows),
          static_cast<int>(e.cols)};
}

BackwardRows check_backward_rows(const VectorArg& lse, const VectorArg& row_grad, int64_t batch, bool exact) {
  check_vector("lse", lse, kFloat32, batch);
  check_vector("row_grad", row_grad, kFloat32, batch);
  return {vector_pointer<const float>(lse), vector_pointer<const float>(row_grad), exact};
}

void forward_partials(int device, int64_t stream, int policy, const MatrixArg& e, const MatrixArg& weight,
                      const VectorArg& w_inv_norm, const VectorArg& labels, const std::array<double, 4>& margin,
                      int64_t splits, const VectorArg& row_max, const VectorArg& row_sumexp,
                      const VectorArg& target_cos, const VectorArg& nn_cos, const VectorArg& nn_index) {
  check_device_index(device);
  const cudaStream_t cuda_stream = check_stream(stream);
  ForwardParams p{};
  p.in = check_operands(policy, e, weight, w_inv_norm, labels);
  p.margin = check_margin(margin);
  const int class_tiles = ceil_div(p.in.classes, kForwardClasses);
  p.tiles_per_split = check_splits(splits, class_tiles);
  p.splits = static_cast<int>(splits);
  check_grid(static_cast<int64_t>(ceil_div(p.in.batch, kForwardRows)) * splits);
  const int64_t outputs = splits * e.rows;
  check_vector("row_max", row_max, kFloat32, outputs);
  check_vector("row_sumexp", row_sumexp, kFloat32, outputs);
  check_vector("target_cos", target_cos, kFloat32, outputs);
  check_vector("nn_cos", nn_cos, kFloat32, outputs);
  check_vector("nn_index", nn_index, kInt64, outputs);
  p.row_max = vector_pointer<float>(row_max);
  p.row_sumexp = vector_pointer<float>(row_sumexp);
  p.target_cos = vector_pointer<float>(target_cos);
  p.nn_cos = vector_pointer<float>(nn_cos);
  p.nn_index = vector_pointer<int64_t>(nn_index);

  py::gil_scoped_release release;
  DeviceScope scope(device);
  check_all_on_device({{"e", e.ptr}, {"weight", weight.ptr}, {"w_inv_norm", w_inv_norm.ptr}, {"labels", labels.ptr},
                       {"row_max", row_max.ptr}, {"row_sumexp", row_sumexp.ptr}, {"target_cos", target_cos.ptr},
                       {"nn_cos", nn_cos.ptr}, {"nn_index", nn_index.ptr}},
                      device);
  check_stream_device(cuda_stream, device);
  cuda_check(launch_forward_partials(policy, p, cuda_stream), "forward_partials launch");
}

void backward_dweight(int device, int64_t stream, int policy, const MatrixArg& e, const MatrixArg& weight,
                      const VectorArg& w_inv_norm, const VectorArg& labels, const VectorArg& lse,
                      const VectorArg& row_grad, const std::array<double, 4>& margin, bool exact_margin_grad,
                      const MatrixArg& d_weight) {
  check_device_index(device);
  const cudaStream_t cuda_stream = check_stream(stream);
  DWeightParams p{};
  p.in = check_operands(policy, e, weight, w_inv_norm, labels);
  p.margin = check_margin(margin);
  p.rows = check_backward_rows(lse, row_grad, e.rows, exact_margin_grad);
  check_matrix("d_weight", d_weight);
  if (d_weight.dtype != weight.dtype || d_weight.rows != weight.rows || d_weight.cols != weight.cols) {
    value_error("d_weight: must have weight's dtype and shape");
  }
  check_grid(static_cast<int64_t>(ceil_div(p.in.dim, kBackwardColumns)) * ceil_div(p.in.classes, kBackwardClasses));
  p.d_weight = reinterpret_cast<void*>(static_cast<uintptr_t>(d_weight.ptr));
  p.d_weight_row_stride = d_weight.row_stride;

  py::gil_scoped_release release;
  DeviceScope scope(device);
  check_all_on_device({{"e", e.ptr}, {"weight", weight.ptr}, {"w_inv_norm", w_inv_norm.ptr}, {"labels", labels.ptr},
                       {"lse", lse.ptr}, {"row_grad", row_grad.ptr}, {"d_weight", d_weight.ptr}},
                      device);
  check_stream_device(cuda_stream, device);
  cuda_check(launch_backward_dweight(policy, p, cuda_stream), "backward_dweight launch");
}

void backward_dembedding(int device, int64_t stream, int policy, const MatrixArg& e, const MatrixArg& weight,
                         const VectorArg& w_inv_norm, const VectorArg& labels, const VectorArg& lse,
                         const VectorArg& row_grad, const std::array<double, 4>& margin, bool exact_margin_grad,
                         int64_t splits, bool deterministic, const MatrixArg& d_e) {
  check_device_index(device);
  const cudaStream_t cuda_stream = check_stream(stream);
  DEmbeddingParams p{};
  p.in = check_operands(policy, e, weight, w_inv_norm, labels);
  p.margin = check_margin(margin);
  p.rows = check_backward_rows(lse, row_grad, e.rows, exact_margin_grad);
  const int class_tiles = ceil_div(p.in.classes, kBackwardClasses);
  p.tiles_per_split = check_splits(splits, class_tiles);
  p.splits = static_cast<int>(splits);
  p.deterministic = deterministic;
  check_grid(static_cast<int64_t>(ceil_div(p.in.dim, kBackwardColumns)) * ceil_div(p.in.batch, kBackwardRows) *
             splits);
  check_matrix("d_e", d_e);
  const int64_t rows = deterministic ? splits * e.rows : e.rows;
  if (d_e.dtype != kFloat32 || d_e.rows != rows || d_e.cols != e.cols) {
    value_error("d_e: must be float32 of shape (" + std::to_string(rows) + ", " + std::to_string(e.cols) +
                ") (splits · B rows on the deterministic path, B otherwise)");
  }
  p.d_e = reinterpret_cast<float*>(static_cast<uintptr_t>(d_e.ptr));
  p.d_e_row_stride = d_e.row_stride;

  py::gil_scoped_release release;
  DeviceScope scope(device);
  check_all_on_device({{"e", e.ptr}, {"weight", weight.ptr}, {"w_inv_norm", w_inv_norm.ptr}, {"labels", labels.ptr},
                       {"lse", lse.ptr}, {"row_grad", row_grad.ptr}, {"d_e", d_e.ptr}},
                      device);
  check_stream_device(cuda_stream, device);
  cuda_check(launch_backward_dembedding(policy, p, cuda_stream), "backward_dembedding launch");
}

// True when ``device`` exists and the binary holds an image of every kernel for it; never raises
// for a missing device or driver (False then).
bool kernel_image_available(int device) {
  check_device_index(device);
  py::gil_scoped_release release;
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
  const bool ok = probe_forward_partials() == cudaSuccess && probe_backward_dweight() == cudaSuccess &&
                  probe_backward_dembedding() == cudaSuccess;
  cudaGetLastError();
  cudaSetDevice(previous);
  return ok;
}

std::vector<std::string> built_architectures() {
  std::vector<std::string> archs;
  std::string list = CRFIQA_CUDA_ARCHITECTURES;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = list.find(',', start);
    const std::string item = list.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) archs.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return archs;
}

}  // namespace
}  // namespace crfiqa

PYBIND11_MODULE(_C, m) {
  using namespace crfiqa;
  m.doc() = "CUDA kernels of crfiqa_kernels (forward partials, dW, dê); device pointers in, no torch inside.";

  py::class_<MatrixArg>(m, "Matrix", "A row-major device matrix: pointer, dtype code, shape and strides (elements).")
      .def(py::init<int64_t, int, int64_t, int64_t, int64_t, int64_t>(), py::kw_only(), py::arg("ptr"),
           py::arg("dtype"), py::arg("rows"), py::arg("cols"), py::arg("row_stride"), py::arg("col_stride"))
      .def_readonly("ptr", &MatrixArg::ptr)
      .def_readonly("dtype", &MatrixArg::dtype)
      .def_readonly("rows", &MatrixArg::rows)
      .def_readonly("cols", &MatrixArg::cols)
      .def_readonly("row_stride", &MatrixArg::row_stride)
      .def_readonly("col_stride", &MatrixArg::col_stride);
  py::class_<VectorArg>(m, "Vector", "A contiguous device vector: pointer, dtype code, length.")
      .def(py::init<int64_t, int, int64_t>(), py::kw_only(), py::arg("ptr"), py::arg("dtype"), py::arg("length"))
      .def_readonly("ptr", &VectorArg::ptr)
      .def_readonly("dtype", &VectorArg::dtype)
      .def_readonly("length", &VectorArg::length);

  m.def("forward_partials", &forward_partials, py::kw_only(), py::arg("device"), py::arg("stream"), py::arg("policy"),
        py::arg("e"), py::arg("weight"), py::arg("w_inv_norm"), py::arg("labels"), py::arg("margin"),
        py::arg("splits"), py::arg("row_max"), py::arg("row_sumexp"), py::arg("target_cos"), py::arg("nn_cos"),
        py::arg("nn_index"),
        "Partials (splits, B) of one shard: row_max, row_sumexp, target_cos, nn_cos (float32), nn_index (int64).");
  m.def("backward_dweight", &backward_dweight, py::kw_only(), py::arg("device"), py::arg("stream"),
        py::arg("policy"), py::arg("e"), py::arg("weight"), py::arg("w_inv_norm"), py::arg("labels"), py::arg("lse"),
        py::arg("row_grad"), py::arg("margin"), py::arg("exact_margin_grad"), py::arg("d_weight"),
        "dW (C, D) in weight's dtype, normalization Jacobian applied; deterministic.");
  m.def("backward_dembedding", &backward_dembedding, py::kw_only(), py::arg("device"), py::arg("stream"),
        py::arg("policy"), py::arg("e"), py::arg("weight"), py::arg("w_inv_norm"), py::arg("labels"), py::arg("lse"),
        py::arg("row_grad"), py::arg("margin"), py::arg("exact_margin_grad"), py::arg("splits"),
        py::arg("deterministic"), py::arg("d_e"),
        "dê float32: per-split slices (splits · B, D) when deterministic, else atomic adds into (B, D) zeros.");
  m.def("kernel_image_available", &kernel_image_available, py::arg("device"),
        "Whether the device exists and this build holds kernels for it (False without a GPU or driver).");

  m.attr("DTYPE_FLOAT32") = static_cast<int>(kFloat32);
  m.attr("DTYPE_FLOAT16") = static_cast<int>(kFloat16);
  m.attr("DTYPE_BFLOAT16") = static_cast<int>(kBFloat16);
  m.attr("DTYPE_INT64") = static_cast<int>(kInt64);
  m.attr("POLICY_FLOAT16") = static_cast<int>(kPolicyFloat16);
  m.attr("POLICY_BFLOAT16") = static_cast<int>(kPolicyBFloat16);
  m.attr("POLICY_TF32") = static_cast<int>(kPolicyTf32);
  m.attr("POLICY_3XTF32") = static_cast<int>(kPolicy3xTf32);
  m.attr("FORWARD_BLOCK_ROWS") = kForwardRows;
  m.attr("FORWARD_BLOCK_CLASSES") = kForwardClasses;
  m.attr("BACKWARD_BLOCK_ROWS") = kBackwardRows;
  m.attr("BACKWARD_BLOCK_CLASSES") = kBackwardClasses;
  m.attr("BACKWARD_BLOCK_COLUMNS") = kBackwardColumns;
  m.attr("ARCHITECTURES") = built_architectures();
  m.attr("CUDA_RUNTIME_VERSION") = CUDART_VERSION;
}
