// crfiqa_kernels._C: the module definition and the two launch entry points.
//
// Python passes device pointers as integers with their dtype codes, sizes and strides, the device
// index and a CUDA stream handle (torch.cuda.current_stream().cuda_stream); nothing here knows
// torch, the module links the CUDA runtime only. Every entry point validates in two stages:
//   1. pure checks (checks.h, plan.h): ValueError naming the argument, before any CUDA call;
//   2. device checks (device.h): the device exists, every pointer is device memory of it, the stream
//      is its own — ValueError for a wrong pointer or stream, RuntimeError when the runtime itself
//      fails (no GPU, no driver).
// A failed launch raises RuntimeError with the CUDA error string. Launches are asynchronous: an
// error during the kernel's execution surfaces at the next synchronizing call, as for any CUDA op.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "abi.h"
#include "checks.h"
#include "device.h"
#include "launch.h"
#include "params.h"
#include "plan.h"

namespace py = pybind11;

namespace crfiqa {
namespace {

cudaStream_t stream_of(int64_t stream) { return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(stream)); }

// The checks both launchers begin with, in this order: device index, stream handle, operands, logits;
// the launcher's parameters with the checked operands and logits filled in.
template <class Params>
Params checked_params(int device, int64_t stream, int policy, const MatrixArg& e, const MatrixArg& weight,
                      const VectorArg& w_inv_norm, const VectorArg& labels, const std::array<double, 3>& logits,
                      int negative, const VectorArg& threshold) {
  check_device_index(device);
  check_stream_handle(stream);
  Params p{};
  p.in = check_operands(policy, e, weight, w_inv_norm, labels);
  p.logits = check_logits(logits, negative, threshold, e.rows);
  return p;
}

void forward_partials(int device, int64_t stream, int policy, const MatrixArg& e, const MatrixArg& weight,
                      const VectorArg& w_inv_norm, const VectorArg& labels, const std::array<double, 3>& logits,
                      int negative, const VectorArg& threshold, int64_t splits, const VectorArg& row_max, const VectorArg& row_sumexp,
                      const VectorArg& target_cos, const VectorArg& nn_cos, const VectorArg& nn_index) {
  auto p = checked_params<ForwardParams>(device, stream, policy, e, weight, w_inv_norm, labels, logits, negative,
                                         threshold);
  const ForwardPlan plan = plan_forward(e.rows, weight.rows, splits);
  p.tiles_per_split = static_cast<int>(plan.tiles_per_split);
  p.splits = static_cast<int>(splits);
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
  std::vector<std::pair<std::string, int64_t>> pointers{
      {"e", e.ptr},           {"weight", weight.ptr},         {"w_inv_norm", w_inv_norm.ptr},
      {"labels", labels.ptr}, {"row_max", row_max.ptr},       {"row_sumexp", row_sumexp.ptr},
      {"target_cos", target_cos.ptr}, {"nn_cos", nn_cos.ptr}, {"nn_index", nn_index.ptr}};
  if (p.logits.threshold != nullptr) pointers.emplace_back("threshold", threshold.ptr);
  check_all_on_device(pointers, device);
  check_stream_device(stream_of(stream), device);
  cuda_check(launch_forward_partials(policy, p, stream_of(stream)), "forward_partials launch");
}

// The plan of a launch on ``device``: its limits come from the device (cached), so the caller's
// buffers are checked against what the kernel will actually use.
void backward(int device, int64_t stream, int policy, const MatrixArg& e, const MatrixArg& weight,
              const VectorArg& w_inv_norm, const VectorArg& labels, const VectorArg& lse, const VectorArg& row_grad,
              const std::array<double, 3>& logits, int negative, const VectorArg& threshold, int64_t blocks,
              bool deterministic,
              const VectorArg& scratch, const MatrixArg& d_e, const MatrixArg& d_weight) {
  auto p = checked_params<BackwardParams>(device, stream, policy, e, weight, w_inv_norm, labels, logits, negative,
                                          threshold);
  p.rows = check_backward_rows(lse, row_grad, e.rows);
  check_matrix("d_weight", d_weight);
  if (d_weight.dtype != weight.dtype || d_weight.rows != weight.rows || d_weight.cols != weight.cols) {
    value_error("d_weight: must have weight's dtype and shape");
  }
  if (blocks < 1) value_error("blocks: must be ≥ 1 (plan_backward's blocks), got " + std::to_string(blocks));
  check_matrix("d_e", d_e);
  const int64_t d_e_rows = deterministic ? blocks * e.rows : e.rows;
  if (d_e.dtype != kFloat32 || d_e.rows != d_e_rows || d_e.cols != e.cols) {
    value_error("d_e: must be float32 of shape (" + std::to_string(d_e_rows) + ", " + std::to_string(e.cols) +
                ") (blocks · B rows on the deterministic path, B otherwise)");
  }
  // The scratch: empty when the plan keeps it in shared memory, else compute-dtype elements on 16 bytes.
  const int compute_dtype = policy_input_dtype(policy);
  if (scratch.length == 0) {
    if (scratch.ptr != 0) value_error("scratch: an empty scratch must have ptr 0");
  } else {
    check_vector("scratch", scratch, compute_dtype, scratch.length);
    if (scratch.ptr % 16 != 0) value_error("scratch: must be 16-byte aligned");
  }

  py::gil_scoped_release release;
  DeviceScope scope(device);
  const BackwardPlan plan = plan_backward(policy, e.rows, weight.rows, e.cols, deterministic, device_limits(device),
                                          blocks);
  if (plan.blocks != blocks) {
    value_error("blocks: " + std::to_string(blocks) + " is not a plan of this problem on device " +
                std::to_string(device) + " (plan_backward gives " + std::to_string(plan.blocks) + ")");
  }
  if (scratch.length != plan.scratch_elements) {
    value_error("scratch: length must be " + std::to_string(plan.scratch_elements) + " (plan_backward), got " +
                std::to_string(scratch.length));
  }
  std::vector<std::pair<std::string, int64_t>> pointers{
      {"e", e.ptr},       {"weight", weight.ptr},     {"w_inv_norm", w_inv_norm.ptr}, {"labels", labels.ptr},
      {"lse", lse.ptr},   {"row_grad", row_grad.ptr}, {"d_e", d_e.ptr},               {"d_weight", d_weight.ptr}};
  if (!plan.scratch_in_shared) pointers.emplace_back("scratch", scratch.ptr);
  if (p.logits.threshold != nullptr) pointers.emplace_back("threshold", threshold.ptr);
  p.group_tiles = static_cast<int>(plan.group_classes / kBackwardClasses);
  p.scratch_in_shared = plan.scratch_in_shared;
  p.scratch = plan.scratch_in_shared ? nullptr : reinterpret_cast<void*>(static_cast<uintptr_t>(scratch.ptr));
  p.scratch_row_stride = plan.scratch_row_stride;
  p.d_weight = reinterpret_cast<void*>(static_cast<uintptr_t>(d_weight.ptr));
  p.d_weight_row_stride = d_weight.row_stride;
  p.deterministic = deterministic;
  p.d_e = reinterpret_cast<float*>(static_cast<uintptr_t>(d_e.ptr));
  p.d_e_row_stride = d_e.row_stride;

  check_all_on_device(pointers, device);
  check_stream_device(stream_of(stream), device);
  cuda_check(launch_backward(device, policy, p, static_cast<int>(plan.blocks), plan.shared_bytes, stream_of(stream)),
             "backward launch");
}

py::dict plan_backward_py(int policy, int64_t batch, int64_t classes, int64_t dim, bool deterministic,
                          int64_t multiprocessors, int64_t max_shared_bytes, int64_t blocks) {
  const BackwardPlan plan =
      plan_backward(policy, batch, classes, dim, deterministic, {multiprocessors, max_shared_bytes}, blocks);
  py::dict out;
  out["group_classes"] = plan.group_classes;
  out["blocks"] = plan.blocks;
  out["groups"] = plan.groups;
  out["scratch_in_shared"] = plan.scratch_in_shared;
  out["scratch_row_stride"] = plan.scratch_row_stride;
  out["scratch_elements"] = plan.scratch_elements;
  out["shared_bytes"] = plan.shared_bytes;
  out["d_e_rows"] = plan.d_e_rows;
  out["grid"] = py::make_tuple(plan.blocks, 1, 1);
  return out;
}

py::dict plan_forward_py(int64_t batch, int64_t classes, int64_t splits) {
  const ForwardPlan plan = plan_forward(batch, classes, splits);
  py::dict out;
  out["blocks"] = plan.blocks;
  out["tiles_per_split"] = plan.tiles_per_split;
  out["grid"] = py::make_tuple(plan.blocks, 1, 1);
  return out;
}

py::dict device_properties(int device) {
  check_device_index(device);
  const DeviceLimits limits = device_limits(device);
  py::dict out;
  out["multiprocessors"] = limits.multiprocessors;
  out["max_shared_bytes"] = limits.max_shared_bytes;
  return out;
}

bool kernel_image_available_py(int device) {
  check_device_index(device);
  py::gil_scoped_release release;
  return kernel_image_available(device);
}

std::vector<std::string> built_architectures() {
  std::vector<std::string> archs;
  const std::string list = CRFIQA_CUDA_ARCHITECTURES;
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
  m.doc() = "CUDA kernels of crfiqa_kernels (forward partials, fused backward); device pointers in, no torch inside.";

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
        py::arg("e"), py::arg("weight"), py::arg("w_inv_norm"), py::arg("labels"), py::arg("logits"),
        py::arg("negative"), py::arg("threshold"), py::arg("splits"), py::arg("row_max"), py::arg("row_sumexp"), py::arg("target_cos"), py::arg("nn_cos"),
        py::arg("nn_index"),
        "Partials (splits, B) of one shard: row_max, row_sumexp, target_cos, nn_cos (float32), nn_index (int64).");
  m.def("backward", &backward, py::kw_only(), py::arg("device"), py::arg("stream"), py::arg("policy"), py::arg("e"),
        py::arg("weight"), py::arg("w_inv_norm"), py::arg("labels"), py::arg("lse"), py::arg("row_grad"),
        py::arg("logits"), py::arg("negative"), py::arg("threshold"), py::arg("blocks"), py::arg("deterministic"),
        py::arg("scratch"), py::arg("d_e"), py::arg("d_weight"),
        "dê float32 (per-block slices (blocks · B, D) when deterministic, else atomic adds into (B, D) zeros) and "
        "dW (C, D) in weight's dtype, normalization Jacobian applied; ``blocks`` and the scratch follow "
        "plan_backward on the device.");
  m.def("plan_forward", &plan_forward_py, py::kw_only(), py::arg("batch"), py::arg("classes"), py::arg("splits"),
        "The forward's grid for ``splits`` class splits (no CUDA call); ValueError if it cannot be launched.");
  m.def("plan_backward", &plan_backward_py, py::kw_only(), py::arg("policy"), py::arg("batch"), py::arg("classes"),
        py::arg("dim"), py::arg("deterministic"), py::arg("multiprocessors"), py::arg("max_shared_bytes"),
        py::arg("blocks") = 0,
        "The backward's grid, scratch and shared memory on a device of these limits (no CUDA call).");
  m.def("device_properties", &device_properties, py::arg("device"),
        "multiprocessors and max_shared_bytes (per block, opt-in) of a device, cached after the first call.");
  m.def("kernel_image_available", &kernel_image_available_py, py::arg("device"),
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
