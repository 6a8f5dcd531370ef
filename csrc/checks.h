// Pure argument checks of the launchers: no CUDA call, no Python object. A failed check throws
// std::invalid_argument naming the argument (pybind11 raises it as ValueError), so every one of them
// runs, and can be tested, on a machine without a GPU.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "abi.h"
#include "params.h"

namespace crfiqa {

// Largest batch / class / embedding size: tile starts (index + tile size) must stay inside int.
constexpr int64_t kMaxExtent = INT32_MAX - 4096;

[[noreturn]] void value_error(const std::string& message);

// The compute dtype code of a product policy (ValueError for an unknown policy).
int policy_input_dtype(int policy);

MatrixRef check_matrix(const std::string& name, const MatrixArg& m);
void check_vector(const std::string& name, const VectorArg& v, int dtype, int64_t length);
// (s, ε_c, t) of the non-target logits, the mode of ν and its per-row threshold: (B,) float32, or empty
// (length 0, ptr 0) for kNegativeNone.
LogitParams check_logits(const std::array<double, 3>& logits, int negative, const VectorArg& threshold,
                         int64_t batch);
void check_device_index(int device);
void check_stream_handle(int64_t stream);

// The operands shared by both kernels; sizes come from the matrices.
CosineOperands check_operands(int policy, const MatrixArg& e, const MatrixArg& weight, const VectorArg& w_inv_norm,
                              const VectorArg& labels);
BackwardRows check_backward_rows(const VectorArg& lse, const VectorArg& row_grad, int64_t batch);

}  // namespace crfiqa
