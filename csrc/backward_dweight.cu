// Backward, class-center half: dW (C, D) in W's dtype, with the normalization Jacobian applied.
//
// Block (column chunk, class tile) owns kBackwardClasses classes × kBackwardColumns embedding
// columns of dW and loops over all batch tiles, so dW needs no atomics and is deterministic:
//   1. recompute the cosine tile (rows × classes, all D columns) on the tensor cores;
//   2. turn it into ∂ℓ/∂c_ij (cosine_grad, derivation there), accumulating ŵ_j · ∂ℓ/∂ŵ_j;
//   3. ∂ℓ/∂ŵ_j += Σ_i ∂ℓ/∂c_ij ê_i for the block's columns: a second tile product with ∂ℓ/∂cᵀ
//      (rounded to the compute dtype, as the chunked backend's `d_cos.to(e_hat.dtype)`) as A and the
//      block's columns of ê as B, through shared memory.
// Epilogue, the Jacobian of ŵ_j = W_j / max(‖W_j‖, 1e-12) (DESIGN §2):
//   ∂ℓ/∂W_j = (∂ℓ/∂ŵ_j − ŵ_j (ŵ_j · ∂ℓ/∂ŵ_j)) / max(‖W_j‖, 1e-12),  ŵ_j = W_j · w_inv_norm_j,
// where ŵ_j · ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij (ê_i · ŵ_j) is a sum over the batch (step 2), so a block needs
// no other block's columns.
#include "common.cuh"
#include "cosine_tile.cuh"
#include "launch.h"
#include "mma.cuh"
#include "params.h"

namespace crfiqa {
namespace {

constexpr int kWarpsM = 2;
constexpr int kWarpsN = 4;
constexpr int kPadNMajor = 8;  // N-major B rows: conflict-free for ldmatrix.trans and tf32 reads

template <class P>
struct DWeightKernel {
  using T = typename P::T;
  // Step 1: rows × classes. Step 3: classes × columns, K = the tile's rows.
  using Tile = CosineTile<P, kBackwardRows, kBackwardClasses, kWarpsM, kWarpsN>;
  static constexpr int MI = Tile::MI;
  static constexpr int NI = Tile::NI;
  static constexpr int kGradLd = kBackwardRows + P::kPad;          // d_cos_t[class][row]
  static constexpr int kEmbLd = kBackwardColumns + kPadNMajor;     // e_cols[row][column]
  static constexpr int MI3 = kBackwardClasses / kWarpsM / 16;
  static constexpr int NI3 = kBackwardColumns / kWarpsN / 8;
  using Coords3 = TileCoords<kBackwardClasses / kWarpsM, kBackwardColumns / kWarpsN, kWarpsN>;
  using CopyColumns = TileCopy<T, kBackwardRows, kBackwardColumns, kThreads>;

  struct Smem {
    union {
      typename Tile::Smem tile;                    // step 1
      alignas(16) T e_cols[kBackwardRows * kEmbLd];  // step 3 (the tile buffers are free by then)
    } shared;
    alignas(16) T d_cos_t[kBackwardClasses * kGradLd];
    float radial_part[kWarpsM][kBackwardClasses];
    float radial[kBackwardClasses];
  };

  __device__ static void run(const DWeightParams& p, Smem& sm) {
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const typename Tile::Coords at(tid);
    const Coords3 at3(tid);
    const int column_chunks = ceil_div(p.in.dim, kBackwardColumns);
    const int chunk = static_cast<int>(blockIdx.x % column_chunks);
    const int col0 = static_cast<int>(blockIdx.x / column_chunks) * kBackwardClasses;
    const int d0 = chunk * kBackwardColumns;

    ClassColumn cols[NI][2];
    float radial[NI][2];
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        cols[ni][e] = load_class_column(p.in, col0 + at.col(ni, e));
        radial[ni][e] = 0.0f;
      }
    }
    float d_w_hat[MI3][NI3][4];
    zero(d_w_hat);

    for (int row0 = 0; row0 < p.in.batch; row0 += kBackwardRows) {
      BackwardRow rows[MI][2];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) rows[mi][h] = load_backward_row(p.in, p.rows, row0 + at.row(mi, h));
      }
      float d_cos[MI][NI][4];
      Tile::compute(d_cos, sm.shared.tile, p.in, row0, col0, tid);
      cosine_grad(d_cos, rows, cols, p.margin, p.rows.exact_margin_grad, radial);

      // ∂ℓ/∂cᵀ (classes × rows) and the block's columns of ê (rows × columns) to shared memory.
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            sm.d_cos_t[at.col(ni, i & 1) * kGradLd + at.row(mi, i >> 1)] = from_float<T>(d_cos[mi][ni][i]);
          }
        }
      }
      CopyColumns::copy(sm.shared.e_cols, kEmbLd, p.in.e, row0, min(kBackwardRows, p.in.batch - row0), d0,
                        min(kBackwardColumns, p.in.dim - d0), tid);
      __syncthreads();

      // ∂ℓ/∂ŵ[classes, columns] += ∂ℓ/∂cᵀ · ê[rows, columns].
      warp_mma<P, MI3, NI3, true>(d_w_hat, sm.d_cos_t + at3.wm * (kBackwardClasses / kWarpsM) * kGradLd, kGradLd,
                                  sm.shared.e_cols + at3.wn * (kBackwardColumns / kWarpsN), kEmbLd, kBackwardRows,
                                  lane);
      __syncthreads();
    }

    // ŵ_j · ∂ℓ/∂ŵ_j: the thread sums over its rows, then over the lanes holding the other rows of
    // the warp (g = lane / 4: masks 4, 8, 16), then over the warps along the rows, in fixed order.
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float x = radial[ni][e];
        x = warp_sum_xor(x, 4);
        x = warp_sum_xor(x, 8);
        x = warp_sum_xor(x, 16);
        if (at.g == 0) sm.radial_part[at.wm][at.col(ni, e)] = x;
      }
    }
    __syncthreads();
    if (tid < kBackwardClasses) {
      float x = sm.radial_part[0][tid];
#pragma unroll
      for (int w = 1; w < kWarpsM; ++w) x += sm.radial_part[w][tid];
      sm.radial[tid] = x;
    }
    __syncthreads();

    // Epilogue: ∂ℓ/∂W_j = (∂ℓ/∂ŵ_j − ŵ_j (ŵ_j · ∂ℓ/∂ŵ_j)) · w_inv_norm_j, stored in W's dtype.
#pragma unroll
    for (int mi = 0; mi < MI3; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local_class = at3.row(mi, h);
        const int cls = col0 + local_class;
        if (cls >= p.in.classes) continue;
        const float inv_norm = p.in.w_inv_norm[cls];
        const float radial_j = sm.radial[local_class];
#pragma unroll
        for (int ni = 0; ni < NI3; ++ni) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int d = d0 + at3.col(ni, e);
            if (d >= p.in.dim) continue;
            const int64_t w_offset = static_cast<int64_t>(cls) * p.in.w.row_stride + d;
            const float w_hat = load_as_float(p.in.w.ptr, w_offset, p.in.w.dtype) * inv_norm;
            const float d_w = (d_w_hat[mi][ni][2 * h + e] - w_hat * radial_j) * inv_norm;
            store_from_float(p.d_weight, static_cast<int64_t>(cls) * p.d_weight_row_stride + d, p.in.w.dtype, d_w);
          }
        }
      }
    }
  }
};

template <class P>
__global__ void __launch_bounds__(kThreads) backward_dweight_kernel(const DWeightParams params) {
  extern __shared__ __align__(16) unsigned char smem[];
  DWeightKernel<P>::run(params, *reinterpret_cast<typename DWeightKernel<P>::Smem*>(smem));
}

}  // namespace

cudaError_t launch_backward_dweight(int policy, const DWeightParams& params, cudaStream_t stream) {
  return with_policy(policy, [&](auto p) {
    using P = decltype(p);
    constexpr int bytes = sizeof(typename DWeightKernel<P>::Smem);
    cudaError_t err =
        cudaFuncSetAttribute(backward_dweight_kernel<P>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err != cudaSuccess) return err;
    const int blocks = ceil_div(params.in.dim, kBackwardColumns) * ceil_div(params.in.classes, kBackwardClasses);
    backward_dweight_kernel<P><<<blocks, kThreads, bytes, stream>>>(params);
    return cudaGetLastError();
  });
}

cudaError_t probe_backward_dweight() {
  return with_each_policy([](auto p) {
    cudaFuncAttributes attributes;
    return cudaFuncGetAttributes(&attributes, backward_dweight_kernel<decltype(p)>);
  });
}

}  // namespace crfiqa
