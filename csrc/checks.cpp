#include "checks.h"

#include <cmath>
#include <stdexcept>

namespace crfiqa {
namespace {

void check_dtype_code(const std::string& name, int dtype) {
  if (element_size(dtype) == 0) {
    value_error(name + ": unknown dtype code " + std::to_string(dtype) + " (expected " + std::to_string(kFloat32) +
                " float32, " + std::to_string(kFloat16) + " float16, " + std::to_string(kBFloat16) + " bfloat16 or " +
                std::to_string(kInt64) + " int64)");
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

}  // namespace

void value_error(const std::string& message) { throw std::invalid_argument(message); }

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
  if (v.dtype != dtype) value_error(name + ": must be " + dtype_name(dtype) + ", got " + dtype_name(v.dtype));
  if (v.length != length) {
    value_error(name + ": length must be " + std::to_string(length) + ", got " + std::to_string(v.length));
  }
  check_pointer(name, v.ptr, v.dtype);
}

LogitParams check_logits(const std::array<double, 3>& logits, int negative, const VectorArg& threshold,
                         int64_t batch) {
  for (double x : logits) {
    if (!std::isfinite(x)) value_error("logits: (s, cos_clamp, t) must be finite");
  }
  if (logits[0] <= 0) value_error("logits: s must be positive, got " + std::to_string(logits[0]));
  if (!(logits[1] >= 0 && logits[1] < 1)) value_error("logits: cos_clamp must lie in [0, 1), got " + std::to_string(logits[1]));
  if (negative < kNegativeNone || negative > kNegativeCurricular) {
    value_error("negative: must be 0 (none), 1 (filter) or 2 (curricular), got " + std::to_string(negative));
  }
  const float* row_thresholds = nullptr;
  if (negative == kNegativeNone) {
    if (threshold.length != 0 || threshold.ptr != 0) value_error("threshold: must be empty (ptr 0) without a transform");
  } else {
    check_vector("threshold", threshold, kFloat32, batch);
    row_thresholds = vector_pointer<const float>(threshold);
  }
  const float clamp = static_cast<float>(logits[1]);
  return {static_cast<float>(logits[0]), -1.0f + clamp, 1.0f - clamp, static_cast<float>(logits[2]), negative,
          row_thresholds};
}

void check_device_index(int device) {
  if (device < 0) value_error("device: must be a CUDA device index ≥ 0, got " + std::to_string(device));
}

void check_stream_handle(int64_t stream) {
  if (stream < 0) value_error("stream: must be a CUDA stream handle (≥ 0), got " + std::to_string(stream));
}

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

BackwardRows check_backward_rows(const VectorArg& lse, const VectorArg& row_grad, int64_t batch) {
  check_vector("lse", lse, kFloat32, batch);
  check_vector("row_grad", row_grad, kFloat32, batch);
  return {vector_pointer<const float>(lse), vector_pointer<const float>(row_grad)};
}

}  // namespace crfiqa
