// The cosine tile every kernel starts from, and the cosine gradient of the backward.
//
// CosineTile computes the products ê_i · ŵ_j for a BM × BN tile (rows × classes) over all D
// columns on the tensor cores, streaming BK-wide column slices of ê and ŵ = W · (1/‖W_j‖) (scaled
// in float as it is copied, then rounded to the compute dtype) through double-buffered shared
// memory (the next slice's global reads are in flight while the current one is multiplied).
// The caller clamps. Thread (warp, lane) holds, for mi < MI, ni < NI,
// i < 4, the element at
//   row    wm·WM + 16·mi + g + 8·(i / 2)      (wm = warp / WARPS_N, g = lane / 4)
//   class  wn·WN + 8·ni + 2·t + (i % 2)       (wn = warp % WARPS_N, t = lane % 4)
// of the tile: see TileCoords.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "mma.cuh"
#include "params.h"
#include "tile_copy.cuh"

namespace crfiqa {

template <int WM, int WN, int WARPS_N>
struct TileCoords {
  int wm, wn, g, t;
  __device__ explicit TileCoords(int tid)
      : wm((tid >> 5) / WARPS_N), wn((tid >> 5) % WARPS_N), g((tid & 31) >> 2), t(tid & 3) {}
  __device__ int row(int mi, int h) const { return wm * WM + mi * 16 + g + 8 * h; }
  __device__ int col(int ni, int e) const { return wn * WN + ni * 8 + 2 * t + e; }
};

template <class P, int BM, int BN, int WARPS_M, int WARPS_N>
struct CosineTile {
  using T = typename P::T;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int BK = 64 / static_cast<int>(sizeof(T));  // 64-byte slices: 32 bf16/fp16, 16 fp32
  static constexpr int kLd = BK + P::kPad;
  static constexpr int WM = BM / WARPS_M;
  static constexpr int WN = BN / WARPS_N;
  static constexpr int MI = WM / 16;
  static constexpr int NI = WN / 8;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are whole 16 × 16 blocks");
  using Coords = TileCoords<WM, WN, WARPS_N>;
  using CopyE = TileCopy<T, BM, BK, kThreads>;
  using CopyW = TileCopy<T, BN, BK, kThreads>;

  struct Smem {
    alignas(16) T e[2][BM * kLd];
    alignas(16) T w[2][BN * kLd];
  };

  // acc = ê[row0, row0 + BM) · ŵ[col0, col0 + BN)ᵀ, rows ≥ B and classes ≥ C reading as zero.
  // Ends with __syncthreads(), so the caller may reuse ``sm`` at once.
  __device__ static void compute(float (&acc)[MI][NI][4], Smem& sm, const CosineOperands& in, int row0, int col0,
                                 int tid) {
    const int rows = min(BM, in.batch - row0);
    const int cols = min(BN, in.classes - col0);
    const int lane = tid & 31;
    const Coords at(tid);
    zero(acc);

    CopyE copy_e;
    CopyW copy_w;
    const int slices = (in.dim + BK - 1) / BK;
    copy_e.load(in.e, row0, rows, 0, min(BK, in.dim), tid);
    copy_w.load(in.w, col0, cols, 0, min(BK, in.dim), tid, in.w_inv_norm);
    copy_e.store(sm.e[0], kLd, tid);
    copy_w.store(sm.w[0], kLd, tid);
    __syncthreads();
    for (int slice = 0; slice < slices; ++slice) {
      const int buf = slice & 1;
      const bool more = slice + 1 < slices;
      if (more) {
        const int k1 = (slice + 1) * BK;
        copy_e.load(in.e, row0, rows, k1, min(BK, in.dim - k1), tid);
        copy_w.load(in.w, col0, cols, k1, min(BK, in.dim - k1), tid, in.w_inv_norm);
      }
      warp_mma<P, MI, NI, false>(acc, sm.e[buf] + at.wm * WM * kLd, kLd, sm.w[buf] + at.wn * WN * kLd, kLd, BK,
                                 lane);
      if (more) {
        // The other buffer was last read in the previous slice, before its closing barrier.
        copy_e.store(sm.e[buf ^ 1], kLd, tid);
        copy_w.store(sm.w[buf ^ 1], kLd, tid);
      }
      __syncthreads();
    }
  }
};

// What a thread needs of each of its rows in the backward.
struct BackwardRow {
  int64_t label;
  float lse;
  float grad;
  float threshold;  // of the negative transform
  bool valid;
};

__device__ __forceinline__ BackwardRow load_backward_row(const CosineOperands& in, const BackwardRows& rows,
                                                         const LogitParams& logits, int row) {
  if (row >= in.batch) return {-1, 0.0f, 0.0f, 0.0f, false};
  return {in.labels[row], rows.lse[row], rows.row_grad[row], row_threshold(logits, row), true};
}

// What a thread needs of each of its classes.
struct ClassColumn {
  int index;  // global class index within the shard
  bool valid;
};

__device__ __forceinline__ ClassColumn load_class_column(const CosineOperands& in, int col) {
  return {col, col < in.classes};
}

// Turns the raw products of a tile into ∂L/∂c_ij of the non-target logits (zero at the label column
// and outside the batch and the shard), in place. With the lse_i and upstream gradient g_i of each row
// (DESIGN §3: the log-sum-exp of the non-target logits and ∂L/∂lse_neg_i, or the global ones):
//   c_ij = clamp(ê_i · ŵ_j, −1 + ε_c, 1 − ε_c),  z_ij = s·ν(c_ij)   (j ≠ y_i)
//   ∂lse_i/∂z_ij = exp(z_ij − lse_i)          (the derivative of a log-sum-exp: the softmax of its terms)
//   ∂L/∂c_ij = g_i·exp(z_ij − lse_i)·s·ν'(c_ij)
// The target column's gradient is the op's (PyTorch autograd through the margin family's τ_i).
// The clamp passes the gradient through unchanged, as the chunked backend does (it only matters where
// the product lies within ε_c of ±1 or rounding pushes it past).
// It also accumulates radial[ni][e] += Σ_i ∂L/∂c_ij · (ê_i · ŵ_j) over the thread's rows: the
// ŵ_j · ∂L/∂ŵ_j the normalization Jacobian of dW needs (ŵ_j · Σ_i ∂L/∂c_ij ê_i, with ê_i · ŵ_j the
// product before the clamp).
template <int MI, int NI>
__device__ __forceinline__ void cosine_grad(float (&acc)[MI][NI][4], const BackwardRow (&rows)[MI][2],
                                            const ClassColumn (&cols)[NI][2], const LogitParams& logits,
                                            float (&radial)[NI][2]) {
#pragma unroll
  for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const BackwardRow& row = rows[mi][h];
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const ClassColumn& col = cols[ni][e];
          float& x = acc[mi][ni][2 * h + e];
          const float raw = x;
          const float c = clamp_cosine(raw, logits);
          const float z = logits.s * negative_value(c, row.threshold, logits);
          const float p = exp2f((z - row.lse) * kLog2e);
          const bool inside = row.valid && col.valid && row.label != col.index;
          x = inside ? logits.s * row.grad * p * negative_slope(c, row.threshold, logits) : 0.0f;
          if (inside) radial[ni][e] += x * raw;
        }
      }
    }
  }
}

}  // namespace crfiqa
