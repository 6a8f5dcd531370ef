// Launch parameters shared by the launchers (host) and the kernels (device).
//
// The bindings fill these from what Python passes (device pointers as integers, sizes, strides,
// dtype codes) after validating every field; the kernels trust them. Matrices are row-major with a
// unit column stride and any row stride >= their column count.
#pragma once

#include <cstdint>

namespace crfiqa {

// Element type codes, shared with Python (crfiqa_kernels._C.DTYPE_*).
enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kInt64 = 3 };

// How the tile products run on the tensor cores, shared with Python (crfiqa_kernels._C.POLICY_*):
// bf16/fp16 operands on m16n8k16; fp32 operands either rounded to tf32 (m16n8k8) or split into a
// tf32 head and a tf32 tail and multiplied with three tf32 products ("3xTF32": about fp32 accuracy,
// for torch.backends.cuda.matmul.allow_tf32 = False).
enum Policy : int { kPolicyFloat16 = 0, kPolicyBFloat16 = 1, kPolicyTf32 = 2, kPolicy3xTf32 = 3 };

struct MatrixRef {
  const void* ptr;
  int dtype;
  int64_t row_stride;  // in elements
  bool vector_ok;      // ptr and row_stride * element size are multiples of 16 bytes
};

// Negative transforms ν of the non-target logits s·ν(c) (crfiqa_kernels.backends.contract.NEGATIVE_KINDS).
enum Negative : int { kNegativeNone = 0, kNegativeFilter = 1, kNegativeCurricular = 2 };

// What the kernels know of the margin: z_ij = s·ν(c_ij) for j ≠ y_i, c clamped to [cos_low, cos_high];
// ν's per-row threshold (null for kNegativeNone) and CurricularFace's t. All run-time values.
struct LogitParams {
  float s, cos_low, cos_high, t;
  int negative;
  const float* threshold;
};

// The operands every kernel reads: ê (B, D) in the compute dtype, raw W (C, D) in its own dtype,
// 1 / max(‖W_j‖, 1e-12) (C,) float32, labels (B,) int64 (any value; only [0, C) names a class).
struct CosineOperands {
  MatrixRef e;
  MatrixRef w;
  const float* w_inv_norm;
  const int64_t* labels;
  int batch;
  int classes;
  int dim;
};

// Partials (S, B), row-major: field[split * batch + row].
struct ForwardParams {
  CosineOperands in;
  LogitParams logits;
  int splits;
  int tiles_per_split;  // class tiles walked by one split; the last split is never empty
  float* row_max;
  float* row_sumexp;
  float* target_cos;
  float* nn_cos;
  int64_t* nn_index;
};

struct BackwardRows {
  const float* lse;       // (B,) log-sum-exp of each row
  const float* row_grad;  // (B,) upstream gradient of each row's lse
};

// The fused backward (backward.cu). Block b walks the class groups b, b + blocks, …; a group is
// group_tiles class tiles (1 … backward_group_tiles(compute dtype size)). For a group it keeps ∂ℓ/∂cᵀ
// (group classes × batch, compute dtype) in a scratch: dynamic shared memory when ``scratch_in_shared``,
// else rows [b·group classes, (b+1)·group classes) of ``scratch``. Either way a scratch row is
// scratch_row_stride elements: the batch rounded up to whole row tiles, plus 16 bytes.
struct BackwardParams {
  CosineOperands in;
  LogitParams logits;
  BackwardRows rows;
  int group_tiles;
  bool scratch_in_shared;
  void* scratch;               // global scratch (compute dtype), null when scratch_in_shared
  int64_t scratch_row_stride;  // elements
  void* d_weight;              // (C, D) in weight's dtype
  int64_t d_weight_row_stride;
  bool deterministic;  // true: block b accumulates into its own rows [b·B, (b+1)·B) of d_e (no atomics);
                       // false: atomic adds into rows [0, B) (zeroed by the caller)
  float* d_e;
  int64_t d_e_row_stride;
};

}  // namespace crfiqa
