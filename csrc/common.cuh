// Device helpers shared by the kernels: element conversions, the cosine clamp, the negative
// transform ν and its derivative, the online-softmax and nearest-negative merges, warp reductions.
//
// All arithmetic here is fp32 and follows DESIGN §2 exactly; no fast-math intrinsics (the build does
// not use --use_fast_math).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "params.h"

namespace crfiqa {

constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------------------------------------
// Element conversions (round to nearest even, as torch's .to()).
// ---------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// One element of a matrix of runtime dtype ``dtype`` (kFloat32/kFloat16/kBFloat16), as float.
__device__ __forceinline__ float load_as_float(const void* base, int64_t offset, int dtype) {
  switch (dtype) {
    case kFloat16: return __half2float(static_cast<const __half*>(base)[offset]);
    case kBFloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[offset]);
    default: return static_cast<const float*>(base)[offset];
  }
}

__device__ __forceinline__ void store_from_float(void* base, int64_t offset, int dtype, float value) {
  switch (dtype) {
    case kFloat16: static_cast<__half*>(base)[offset] = __float2half_rn(value); break;
    case kBFloat16: static_cast<__nv_bfloat16*>(base)[offset] = __float2bfloat16_rn(value); break;
    default: static_cast<float*>(base)[offset] = value; break;
  }
}

// ---------------------------------------------------------------------------------------------
// Cosine and negative transform.
// ---------------------------------------------------------------------------------------------

// clamp(x, low, high) keeping NaN NaN (fminf/fmaxf alone would turn a NaN cosine into a bound).
__device__ __forceinline__ float clamp_cosine(float x, const LogitParams& l) {
  return x != x ? x : fminf(fmaxf(x, l.cos_low), l.cos_high);
}

// ν(c) of a non-target cosine (``threshold`` the row's): c; the inter-class filter's 0 above the
// threshold; CurricularFace's c·(t + c) above it. The mode is the same for every thread of a launch.
__device__ __forceinline__ float negative_value(float c, float threshold, const LogitParams& l) {
  if (l.negative == kNegativeFilter) return c > threshold ? 0.0f : c;
  if (l.negative == kNegativeCurricular) return c > threshold ? c * (l.t + c) : c;
  return c;
}

// ν'(c): 1; the filter's 0 above the threshold (no gradient); d/dc c·(t + c) = t + 2c above it.
__device__ __forceinline__ float negative_slope(float c, float threshold, const LogitParams& l) {
  if (l.negative == kNegativeFilter) return c > threshold ? 0.0f : 1.0f;
  if (l.negative == kNegativeCurricular) return c > threshold ? l.t + 2.0f * c : 1.0f;
  return 1.0f;
}

// The row's threshold of ν (0 when ν has none; then it is never compared).
__device__ __forceinline__ float row_threshold(const LogitParams& l, int row) {
  return l.threshold != nullptr ? l.threshold[row] : 0.0f;
}

// ---------------------------------------------------------------------------------------------
// Online softmax: (max, Σ exp(z − max)) over a set of logits, mergeable in any grouping.
// ---------------------------------------------------------------------------------------------

// exp(from − to) for from ≤ to, and 0 for an empty set (from = −inf), without −inf − (−inf) = NaN.
// A NaN sum stays NaN after scaling (NaN · 0 = NaN), so a NaN logit always reaches the output.
__device__ __forceinline__ float softmax_rescale(float from_max, float to_max) {
  return from_max == -INFINITY ? 0.0f : exp2f((from_max - to_max) * kLog2e);
}

struct SoftmaxState {
  float max;  // running max of the logits; NaN logits are skipped here (fmaxf) ...
  float sum;  // ... and poison the sum instead: exp(NaN − max) = NaN
};

__device__ __forceinline__ SoftmaxState softmax_merge(SoftmaxState a, SoftmaxState b) {
  const float m = fmaxf(a.max, b.max);
  return {m, a.sum * softmax_rescale(a.max, m) + b.sum * softmax_rescale(b.max, m)};
}

// ---------------------------------------------------------------------------------------------
// Nearest negative: the largest cosine off the label column and its lowest class index.
// ---------------------------------------------------------------------------------------------

struct NearestState {
  float cos;  // −inf while no negative was seen; NaN cosines never win (comparisons are false)
  int index;
};

__device__ __forceinline__ NearestState nearest_merge(NearestState a, NearestState b) {
  const bool take_b = b.cos > a.cos || (b.cos == a.cos && b.index < a.index);
  return take_b ? b : a;
}

// The target cosine of a row: present in exactly one place or nowhere (value NaN then).
struct TargetState {
  float cos;
  bool found;
};

__device__ __forceinline__ TargetState target_merge(TargetState a, TargetState b) {
  return b.found ? b : a;
}

// ---------------------------------------------------------------------------------------------
// Warp reductions. Lanes l and l ^ mask exchange; both end with the same merged value because every
// merge above is symmetric (fp addition commutes, the nearest order is total, one target at most).
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ SoftmaxState shfl_xor(SoftmaxState s, int mask) {
  return {__shfl_xor_sync(0xffffffffu, s.max, mask), __shfl_xor_sync(0xffffffffu, s.sum, mask)};
}

__device__ __forceinline__ NearestState shfl_xor(NearestState s, int mask) {
  return {__shfl_xor_sync(0xffffffffu, s.cos, mask), __shfl_xor_sync(0xffffffffu, s.index, mask)};
}

__device__ __forceinline__ TargetState shfl_xor(TargetState s, int mask) {
  const int found = __shfl_xor_sync(0xffffffffu, static_cast<int>(s.found), mask);
  return {__shfl_xor_sync(0xffffffffu, s.cos, mask), found != 0};
}

__device__ __forceinline__ float warp_sum_xor(float x, int mask) {
  return x + __shfl_xor_sync(0xffffffffu, x, mask);
}

}  // namespace crfiqa
