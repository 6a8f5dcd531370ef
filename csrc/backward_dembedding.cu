// Backward, embedding half: dê (B, D) float32.
//
// Block (column chunk, row tile, split) owns kBackwardRows rows × kBackwardColumns embedding columns
// of dê and walks the class tiles of its split, accumulating in registers:
//   1. recompute the cosine tile (rows × classes, all D columns) on the tensor cores;
//   2. turn it into ∂ℓ/∂c_ij (cosine_grad, derivation there);
//   3. ∂ℓ/∂ê_i += Σ_j ∂ℓ/∂c_ij ŵ_j: a second tile product with ∂ℓ/∂c (rounded to the compute dtype)
//      as A and the block's columns of ŵ = W · w_inv_norm (scaled in float, then rounded, as the
//      chunked backend: float16 holds no ∂ℓ/∂c_ij / ‖W_j‖ for a small W_j) as B, through shared
//      memory.
// The embeddings' own normalization Jacobian is applied by PyTorch autograd outside (ops.py).
// At the end each block adds its split's share to the output:
//   - deterministic: split s stores into its own slice, rows [s·B, (s+1)·B) of d_e (every element of
//     the slice is written by exactly one block); the caller sums the slices in a fixed order;
//   - otherwise: atomic adds into rows [0, B) (zeroed by the caller), one per split and element.
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
struct DEmbeddingKernel {
  using T = typename P::T;
  // Step 1: rows × classes. Step 3: rows × columns, K = the tile's classes.
  using Tile = CosineTile<P, kBackwardRows, kBackwardClasses, kWarpsM, kWarpsN>;
  static constexpr int MI = Tile::MI;
  static constexpr int NI = Tile::NI;
  static constexpr int kGradLd = kBackwardClasses + P::kPad;      // d_cos[row][class]
  static constexpr int kWeightLd = kBackwardColumns + kPadNMajor;  // w_cols[class][column]
  static constexpr int MI3 = kBackwardRows / kWarpsM / 16;
  static constexpr int NI3 = kBackwardColumns / kWarpsN / 8;
  using Coords3 = TileCoords<kBackwardRows / kWarpsM, kBackwardColumns / kWarpsN, kWarpsN>;
  using CopyColumns = TileCopy<T, kBackwardClasses, kBackwardColumns, kThreads>;

  struct Smem {
    union {
      typename Tile::Smem tile;                        // step 1
      alignas(16) T w_cols[kBackwardClasses * kWeightLd];  // step 3 (the tile buffers are free by then)
    } shared;
    alignas(16) T d_cos[kBackwardRows * kGradLd];
  };

  __device__ static void run(const DEmbeddingParams& p, Smem& sm) {
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const typename Tile::Coords at(tid);
    const Coords3 at3(tid);
    const int column_chunks = ceil_div(p.in.dim, kBackwardColumns);
    const int row_tiles = ceil_div(p.in.batch, kBackwardRows);
    const int chunk = static_cast<int>(blockIdx.x % column_chunks);
    const int rest = static_cast<int>(blockIdx.x / column_chunks);
    const int row0 = (rest % row_tiles) * kBackwardRows;
    const int split = rest / row_tiles;
    const int d0 = chunk * kBackwardColumns;
    const int class_tiles = ceil_div(p.in.classes, kBackwardClasses);
    const int first_tile = split * p.tiles_per_split;
    const int last_tile = min(first_tile + p.tiles_per_split, class_tiles);

    BackwardRow rows[MI][2];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) rows[mi][h] = load_backward_row(p.in, p.rows, row0 + at.row(mi, h));
    }
    float d_e[MI3][NI3][4];
    zero(d_e);

    for (int tile = first_tile; tile < last_tile; ++tile) {
      const int col0 = tile * kBackwardClasses;
      ClassColumn cols[NI][2];
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
        for (int e = 0; e < 2; ++e) cols[ni][e] = load_class_column(p.in, col0 + at.col(ni, e));
      }
      float d_cos[MI][NI][4];
      Tile::compute(d_cos, sm.shared.tile, p.in, row0, col0, tid);
      cosine_grad(d_cos, rows, cols, p.margin, p.rows.exact_margin_grad);

      // ∂ℓ/∂c_ij (rows × classes) and the block's columns of ŵ (classes × columns).
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            sm.d_cos[at.row(mi, i >> 1) * kGradLd + at.col(ni, i & 1)] =
                from_float<T>(d_cos[mi][ni][i]);
          }
        }
      }
      CopyColumns::copy(sm.shared.w_cols, kWeightLd, p.in.w, col0, min(kBackwardClasses, p.in.classes - col0), d0,
                        min(kBackwardColumns, p.in.dim - d0), tid, p.in.w_inv_norm);
      __syncthreads();

      // ∂ℓ/∂ê[rows, columns] += ∂ℓ/∂c[rows, classes] · ŵ[classes, columns].
      warp_mma<P, MI3, NI3, true>(d_e, sm.d_cos + at3.wm * (kBackwardRows / kWarpsM) * kGradLd, kGradLd,
                                  sm.shared.w_cols + at3.wn * (kBackwardColumns / kWarpsN), kWeightLd,
                                  kBackwardClasses, lane);
      __syncthreads();
    }

    const int64_t slice_row0 = p.deterministic ? static_cast<int64_t>(split) * p.in.batch : 0;
#pragma unroll
    for (int mi = 0; mi < MI3; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + at3.row(mi, h);
        if (row >= p.in.batch) continue;
        float* out_row = p.d_e + (slice_row0 + row) * p.d_e_row_stride;
#pragma unroll
        for (int ni = 0; ni < NI3; ++ni) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int d = d0 + at3.col(ni, e);
            if (d >= p.in.dim) continue;
            const float value = d_e[mi][ni][2 * h + e];
            if (p.deterministic) {
              out_row[d] = value;
            } else {
              atomicAdd(out_row + d, value);
            }
          }
        }
      }
    }
  }
};

template <class P>
__global__ void __launch_bounds__(kThreads) backward_dembedding_kernel(const DEmbeddingParams params) {
  extern __shared__ __align__(16) unsigned char smem[];
  DEmbeddingKernel<P>::run(params, *reinterpret_cast<typename DEmbeddingKernel<P>::Smem*>(smem));
}

}  // namespace

cudaError_t launch_backward_dembedding(int policy, const DEmbeddingParams& params, cudaStream_t stream) {
  return with_policy(policy, [&](auto p) {
    using P = decltype(p);
    constexpr int bytes = sizeof(typename DEmbeddingKernel<P>::Smem);
    cudaError_t err =
        cudaFuncSetAttribute(backward_dembedding_kernel<P>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err != cudaSuccess) return err;
    const int blocks =
        ceil_div(params.in.dim, kBackwardColumns) * ceil_div(params.in.batch, kBackwardRows) * params.splits;
    backward_dembedding_kernel<P><<<blocks, kThreads, bytes, stream>>>(params);
    return cudaGetLastError();
  });
}

cudaError_t probe_backward_dembedding() {
  return with_each_policy([](auto p) {
    cudaFuncAttributes attributes;
    return cudaFuncGetAttributes(&attributes, backward_dembedding_kernel<decltype(p)>);
  });
}

}  // namespace crfiqa
