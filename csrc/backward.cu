// Backward (DESIGN §3, §3.1): dê (B, D) float32 and dW (C, D) in W's dtype, each cosine tile computed once.
//
// Block b owns the class tiles [b·tiles_per_block, (b+1)·tiles_per_block) and treats them one after
// the other. For a class tile (kBackwardClasses classes) it walks the whole batch in tiles of
// kBackwardRows rows:
//   1. recompute the cosine tile (rows × classes, all D columns) on the tensor cores — the one
//      recompute of the backward;
//   2. turn it into ∂ℓ/∂c_ij (cosine_grad, derivation there), accumulating ŵ_j · ∂ℓ/∂ŵ_j (``radial``);
//   3. round ∂ℓ/∂c to the compute dtype (as the chunked backend's ``d_cos.to(e_hat.dtype)``), keep its
//      transpose in the block's scratch (classes × batch: shared memory when it fits, else the
//      block's rows of a global scratch), and add the tile's share of dê:
//        ∂ℓ/∂ê_i += Σ_j ∂ℓ/∂c_ij ŵ_j     (rows × D, K = the tile's classes)
//      kBackwardColumns columns at a time, ŵ = W · w_inv_norm scaled in float, then rounded.
//      The sum over class tiles runs through fp32 atomic adds into d_e (zeroed by the caller), or,
//      when deterministic, into the block's own slice of d_e (rows [b·B, (b+1)·B)): its first tile
//      stores, the next ones add, always by the same thread, and the caller sums the slices in a
//      fixed order.
// After the batch, the tile's rows of dW, once and without atomics (K = B):
//   ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij ê_i       (∂ℓ/∂cᵀ from the scratch times ê, kBackwardColumns columns at a time)
// and the Jacobian of ŵ_j = W_j / max(‖W_j‖, 1e-12) (DESIGN §2) in the epilogue:
//   ∂ℓ/∂W_j = (∂ℓ/∂ŵ_j − ŵ_j (ŵ_j · ∂ℓ/∂ŵ_j)) / max(‖W_j‖, 1e-12),  ŵ_j = W_j · w_inv_norm_j,
// where ŵ_j · ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij (ê_i · ŵ_j) is step 2's ``radial``.
// The embeddings' own normalization Jacobian is applied by PyTorch autograd outside (ops.py).
//
// Products per class tile and batch tile: the cosine tile (BM·BN·D), the dê share (BM·BN·D) and the
// dW share (BN·BM·D): with the forward, 4 B·C·D multiply-adds in all (plus the padding of B and C to
// whole tiles).
#include "common.cuh"
#include "cosine_tile.cuh"
#include "launch.h"
#include "mma.cuh"
#include "params.h"
#include "tile_copy.cuh"

#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

namespace crfiqa {
namespace {

constexpr int kWarpsM = 2;
constexpr int kWarpsN = 4;
constexpr int kPadNMajor = 8;  // N-major B rows: conflict-free for ldmatrix.trans and tf32 reads
constexpr int kBM = kBackwardRows;
constexpr int kBN = kBackwardClasses;
constexpr int kBD = kBackwardColumns;
static_assert(kBM == kBN, "the dê and dW products share one warp layout (64 × kBD over 2 × 4 warps)");

template <typename T>
constexpr int dtype_of() {
  if constexpr (sizeof(T) == 4) {
    return kFloat32;
  } else if constexpr (std::is_same_v<T, __half>) {
    return kFloat16;
  } else {
    return kBFloat16;
  }
}

template <class P>
struct BackwardKernel {
  using T = typename P::T;
  using Tile = CosineTile<P, kBM, kBN, kWarpsM, kWarpsN>;
  static constexpr int MI = Tile::MI;
  static constexpr int NI = Tile::NI;
  static constexpr int kGradLd = kBN + P::kPad;   // d_cos[row][class]: A of the dê product (K = classes)
  static constexpr int kGradTLd = kBM + P::kPad;  // d_cos_t[class][row]: A of the dW product (K = rows)
  static constexpr int kColsLd = kBD + kPadNMajor;  // w_cols[class][column], e_cols[row][column]: N-major B
  // Both second products are 64 × kBD tiles over the same 2 × 4 warps.
  static constexpr int MI2 = kBM / kWarpsM / 16;
  static constexpr int NI2 = kBD / kWarpsN / 8;
  using Coords2 = TileCoords<kBM / kWarpsM, kBD / kWarpsN, kWarpsN>;
  using CopyColumns = TileCopy<T, kBM, kBD, kThreads>;
  using CopyGrad = TileCopy<T, kBN, kBM, kThreads>;
  static constexpr int kVec = Chunk<T>::kVec;
  static constexpr int kRowsPerThread = kBM * kBN / kThreads;  // transposed store into the scratch
  static_assert(kThreads % kBN == 0 && kRowsPerThread % kVec == 0, "scratch stores are whole 16-byte chunks");

  struct EmbeddingBuffers {
    alignas(16) T d_cos[kBM * kGradLd];
    alignas(16) T w_cols[kBN * kColsLd];
  };
  struct WeightBuffers {
    alignas(16) T d_cos_t[kBN * kGradTLd];
    alignas(16) T e_cols[kBM * kColsLd];
  };
  struct Smem {
    union {
      typename Tile::Smem tile;  // step 1
      EmbeddingBuffers de;       // step 3
      WeightBuffers dw;          // dW
    } u;
    float radial_part[kWarpsM][kBN];
    float radial[kBN];
  };

  __device__ static void run(const BackwardParams& p, Smem& sm, T* scratch) {
    const int class_tiles = ceil_div(p.in.classes, kBN);
    const int first_tile = static_cast<int>(blockIdx.x) * p.tiles_per_block;
    const int last_tile = min(first_tile + p.tiles_per_block, class_tiles);
    for (int tile = first_tile; tile < last_tile; ++tile) class_tile(p, sm, scratch, tile * kBN, tile == first_tile);
  }

  __device__ static void class_tile(const BackwardParams& p, Smem& sm, T* scratch, int col0, bool first) {
    const int tid = threadIdx.x;
    const typename Tile::Coords at(tid);
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
    for (int row0 = 0; row0 < p.in.batch; row0 += kBM) {
      BackwardRow rows[MI][2];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) rows[mi][h] = load_backward_row(p.in, p.rows, row0 + at.row(mi, h));
      }
      float d_cos[MI][NI][4];
      Tile::compute(d_cos, sm.u.tile, p.in, row0, col0, tid);  // ends with a barrier: sm.u is free
      cosine_grad(d_cos, rows, cols, p.margin, p.rows.exact_margin_grad, radial);
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            sm.u.de.d_cos[at.row(mi, i >> 1) * kGradLd + at.col(ni, i & 1)] = from_float<T>(d_cos[mi][ni][i]);
          }
        }
      }
      __syncthreads();
      keep_transposed(sm.u.de.d_cos, scratch, p.scratch_row_stride, row0, tid);
      add_embedding_grad(p, sm.u.de, row0, col0, first, tid);  // ends with a barrier
    }
    reduce_radial(sm, radial, at);
    add_weight_grad(p, sm, scratch, col0, tid);
  }

  // scratch[class][row0 + r] = d_cos[r][class] for the tile's kBM rows (rows past B hold zeros), in
  // 16-byte pieces: thread (class, group) writes kRowsPerThread consecutive rows of one class.
  __device__ static void keep_transposed(const T* d_cos, T* scratch, int64_t ld, int row0, int tid) {
    const int cls = tid % kBN;
    const int r0 = (tid / kBN) * kRowsPerThread;
    T* out = scratch + cls * ld + row0 + r0;
#pragma unroll
    for (int c = 0; c < kRowsPerThread / kVec; ++c) {
      Chunk<T> chunk;
#pragma unroll
      for (int i = 0; i < kVec; ++i) chunk.v[i] = d_cos[(r0 + c * kVec + i) * kGradLd + cls];
      *reinterpret_cast<uint4*>(out + c * kVec) = chunk.raw();
    }
  }

  // ∂ℓ/∂ê[rows, columns] += ∂ℓ/∂c[rows, classes] · ŵ[classes, columns], for every column chunk, then
  // into d_e (atomically, or into the block's slice when deterministic).
  __device__ static void add_embedding_grad(const BackwardParams& p, EmbeddingBuffers& sm, int row0, int col0,
                                            bool first, int tid) {
    const int lane = tid & 31;
    const Coords2 at(tid);
    const int64_t slice_row0 = p.deterministic ? static_cast<int64_t>(blockIdx.x) * p.in.batch : 0;
    for (int d0 = 0; d0 < p.in.dim; d0 += kBD) {
      CopyColumns::copy(sm.w_cols, kColsLd, p.in.w, col0, min(kBN, p.in.classes - col0), d0, min(kBD, p.in.dim - d0),
                        tid, p.in.w_inv_norm);
      __syncthreads();
      float acc[MI2][NI2][4];
      zero(acc);
      warp_mma<P, MI2, NI2, true>(acc, sm.d_cos + at.wm * (kBM / kWarpsM) * kGradLd, kGradLd,
                                  sm.w_cols + at.wn * (kBD / kWarpsN), kColsLd, kBN, lane);
      __syncthreads();
#pragma unroll
      for (int mi = 0; mi < MI2; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = row0 + at.row(mi, h);
          if (row >= p.in.batch) continue;
          float* out_row = p.d_e + (slice_row0 + row) * p.d_e_row_stride;
#pragma unroll
          for (int ni = 0; ni < NI2; ++ni) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int d = d0 + at.col(ni, e);
              if (d >= p.in.dim) continue;
              const float value = acc[mi][ni][2 * h + e];
              if (!p.deterministic) {
                atomicAdd(out_row + d, value);
              } else if (first) {
                out_row[d] = value;
              } else {
                out_row[d] += value;  // the same thread stored this element for the block's previous tiles
              }
            }
          }
        }
      }
    }
  }

  // ŵ_j · ∂ℓ/∂ŵ_j into sm.radial: the thread summed over its rows; then over the lanes holding the
  // other rows of the warp (g = lane / 4: masks 4, 8, 16), then over the warps along the rows, in a
  // fixed order.
  __device__ static void reduce_radial(Smem& sm, float (&radial)[NI][2], const typename Tile::Coords& at) {
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
    const int tid = threadIdx.x;
    if (tid < kBN) {
      float x = sm.radial_part[0][tid];
#pragma unroll
      for (int w = 1; w < kWarpsM; ++w) x += sm.radial_part[w][tid];
      sm.radial[tid] = x;
    }
    __syncthreads();
  }

  // ∂ℓ/∂ŵ[classes, columns] = ∂ℓ/∂cᵀ[classes, batch] · ê[batch, columns], then the Jacobian; stored in W's dtype.
  __device__ static void add_weight_grad(const BackwardParams& p, Smem& sm, const T* scratch, int col0, int tid) {
    const int lane = tid & 31;
    const Coords2 at(tid);
    const MatrixRef grad{scratch, dtype_of<T>(), p.scratch_row_stride, true};
    for (int d0 = 0; d0 < p.in.dim; d0 += kBD) {
      float acc[MI2][NI2][4];
      zero(acc);
      for (int k0 = 0; k0 < p.in.batch; k0 += kBM) {
        CopyGrad::copy(sm.u.dw.d_cos_t, kGradTLd, grad, 0, kBN, k0, kBM, tid);
        CopyColumns::copy(sm.u.dw.e_cols, kColsLd, p.in.e, k0, min(kBM, p.in.batch - k0), d0,
                          min(kBD, p.in.dim - d0), tid);
        __syncthreads();
        warp_mma<P, MI2, NI2, true>(acc, sm.u.dw.d_cos_t + at.wm * (kBN / kWarpsM) * kGradTLd, kGradTLd,
                                    sm.u.dw.e_cols + at.wn * (kBD / kWarpsN), kColsLd, kBM, lane);
        __syncthreads();
      }
#pragma unroll
      for (int mi = 0; mi < MI2; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int local_class = at.row(mi, h);
          const int cls = col0 + local_class;
          if (cls >= p.in.classes) continue;
          const float inv_norm = p.in.w_inv_norm[cls];
          const float radial_j = sm.radial[local_class];
#pragma unroll
          for (int ni = 0; ni < NI2; ++ni) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int d = d0 + at.col(ni, e);
              if (d >= p.in.dim) continue;
              const int64_t w_offset = static_cast<int64_t>(cls) * p.in.w.row_stride + d;
              const float w_hat = load_as_float(p.in.w.ptr, w_offset, p.in.w.dtype) * inv_norm;
              const float d_w = (acc[mi][ni][2 * h + e] - w_hat * radial_j) * inv_norm;
              store_from_float(p.d_weight, static_cast<int64_t>(cls) * p.d_weight_row_stride + d, p.in.w.dtype, d_w);
            }
          }
        }
      }
    }
  }
};

template <class P>
__global__ void __launch_bounds__(kThreads, 1) backward_kernel(const BackwardParams params) {
  using K = BackwardKernel<P>;
  extern __shared__ __align__(16) unsigned char smem[];
  typename K::T* scratch =
      params.scratch_in_shared
          ? reinterpret_cast<typename K::T*>(smem + backward_static_shared_bytes(sizeof(typename K::Smem)))
          : static_cast<typename K::T*>(params.scratch) +
                static_cast<int64_t>(blockIdx.x) * kBackwardClasses * params.scratch_row_stride;
  K::run(params, *reinterpret_cast<typename K::Smem*>(smem), scratch);
}

}  // namespace

int64_t backward_shared_bytes(int policy) {
  int64_t bytes = 0;
  with_policy(policy, [&](auto p) {
    bytes = backward_static_shared_bytes(sizeof(typename BackwardKernel<decltype(p)>::Smem));
    return cudaSuccess;
  });
  return bytes;
}

// The dynamic shared memory a kernel may use is a per-device attribute: raised once per (device,
// policy) to the largest size asked for so far, not on every launch.
template <class P>
cudaError_t allow_shared_bytes(int device, int policy, int64_t shared_bytes) {
  static std::mutex mutex;
  static std::map<std::pair<int, int>, int64_t> allowed;
  const std::lock_guard<std::mutex> lock(mutex);
  int64_t& current = allowed[{device, policy}];
  if (shared_bytes <= current) return cudaSuccess;
  const cudaError_t err = cudaFuncSetAttribute(backward_kernel<P>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(shared_bytes));
  if (err == cudaSuccess) current = shared_bytes;
  return err;
}

cudaError_t launch_backward(int device, int policy, const BackwardParams& params, int blocks, int64_t shared_bytes,
                            cudaStream_t stream) {
  return with_policy(policy, [&](auto p) {
    using P = decltype(p);
    const cudaError_t err = allow_shared_bytes<P>(device, policy, shared_bytes);
    if (err != cudaSuccess) return err;
    backward_kernel<P><<<blocks, kThreads, static_cast<size_t>(shared_bytes), stream>>>(params);
    return cudaGetLastError();
  });
}

cudaError_t probe_backward() {
  return with_each_policy([](auto p) {
    cudaFuncAttributes attributes;
    return cudaFuncGetAttributes(&attributes, backward_kernel<decltype(p)>);
  });
}

}  // namespace crfiqa
