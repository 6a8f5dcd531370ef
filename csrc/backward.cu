// Backward (DESIGN §3, §3.1): dê (B, D) float32 and dW (C, D) in W's dtype, each cosine tile computed once.
//
// Block b owns the class groups b, b + blocks, b + 2·blocks, …; a group is group_tiles (at most
// kGroupTiles, chosen by the plan) class tiles of kBackwardClasses classes. For a group it walks the
// whole batch in tiles of kBackwardRows rows; for each batch tile and each class tile of the group:
//   1. recompute the cosine tile (rows × classes, all D columns) on the tensor cores — the one
//      recompute of the backward;
//   2. turn it into ∂ℓ/∂c_ij (cosine_grad, derivation there), adding the rows' share of
//      ŵ_j · ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij (ê_i · ŵ_j) to ``radial_part``;
//   3. round ∂ℓ/∂c to the compute dtype (as the chunked backend's ``d_cos.to(e_hat.dtype)``) into
//      shared memory, and keep its transpose in the block's scratch (group classes × batch: shared
//      memory when it fits, else the block's rows of a global scratch).
// Then the batch tile's share of dê over the whole group (K = the group's classes):
//        ∂ℓ/∂ê_i += Σ_j ∂ℓ/∂c_ij ŵ_j
// kBackwardColumns columns at a time, ŵ = W · w_inv_norm scaled in float, then rounded. The sum over
// groups runs through fp32 atomic adds into d_e (zeroed by the caller) — one per group, row and
// column, so group_tiles times fewer than one per class tile — or, when deterministic, into the
// block's own slice of d_e (rows [b·B, (b+1)·B)): its first group stores, the next ones add, always by
// the same thread, and the caller sums the slices in a fixed order.
// After the batch, each class tile's rows of dW, once and without atomics (K = B):
//   ∂ℓ/∂ŵ_j = Σ_i ∂ℓ/∂c_ij ê_i       (∂ℓ/∂cᵀ from the scratch times ê, kBackwardColumns columns at a time)
// and the Jacobian of ŵ_j = W_j / max(‖W_j‖, 1e-12) (DESIGN §2) in the epilogue:
//   ∂ℓ/∂W_j = (∂ℓ/∂ŵ_j − ŵ_j (ŵ_j · ∂ℓ/∂ŵ_j)) / max(‖W_j‖, 1e-12),  ŵ_j = W_j · w_inv_norm_j.
// The embeddings' own normalization Jacobian is applied by PyTorch autograd outside (ops.py).
//
// Products per class tile and batch tile: the cosine tile (BM·BN·D), the dê share (BM·BN·D) and the
// dW share (BN·BM·D): with the forward, 4 B·C·D multiply-adds in all (plus the padding of B to whole
// batch tiles, of C to whole class tiles and of D to whole column chunks).
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
  static constexpr int kGroupTiles = backward_group_tiles(sizeof(T));  // the most class tiles of a group
  static constexpr int kGroup = kGroupTiles * kBN;
  using Tile = CosineTile<P, kBM, kBN, kWarpsM, kWarpsN>;
  static constexpr int MI = Tile::MI;
  static constexpr int NI = Tile::NI;
  static constexpr int kGradLd = kBN + P::kPad;   // d_cos[tile][row][class]: A of the dê product (K = classes)
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
  static_assert(kGroup % kThreads == 0, "the radial sums are spread evenly over the threads");

  struct WeightBuffers {
    alignas(16) T d_cos_t[kBN * kGradTLd];
    alignas(16) T e_cols[kBM * kColsLd];
  };
  struct Smem {
    alignas(16) T d_cos[kGroupTiles][kBM * kGradLd];  // the batch tile's ∂ℓ/∂c, per class tile of the group
    union {
      typename Tile::Smem tile;              // step 1
      alignas(16) T w_cols[kBN * kColsLd];  // dê
      WeightBuffers dw;                      // dW
    } u;
    float radial_part[kWarpsM][kGroup];  // per warp row: Σ over its rows of ∂ℓ/∂c_ij (ê_i · ŵ_j)
    float radial[kGroup];                // ŵ_j · ∂ℓ/∂ŵ_j
  };

  __device__ static void run(const BackwardParams& p, Smem& sm, T* scratch) {
    const int group_classes = p.group_tiles * kBN;
    const int groups = ceil_div(p.in.classes, group_classes);
    const int first_group = static_cast<int>(blockIdx.x);
    for (int group = first_group; group < groups; group += static_cast<int>(gridDim.x)) {
      class_group(p, sm, scratch, group * group_classes, group == first_group);
    }
  }

  __device__ static void class_group(const BackwardParams& p, Smem& sm, T* scratch, int col0, bool first) {
    const int tid = threadIdx.x;
    const typename Tile::Coords at(tid);
    // Class tiles of the group that hold classes (block-uniform: every barrier below is reached by all).
    const int tiles = min(p.group_tiles, ceil_div(p.in.classes - col0, kBN));
    for (int row0 = 0; row0 < p.in.batch; row0 += kBM) {
      BackwardRow rows[MI][2];
#pragma unroll
      for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) rows[mi][h] = load_backward_row(p.in, p.rows, p.logits, row0 + at.row(mi, h));
      }
#pragma unroll 1
      for (int t = 0; t < tiles; ++t) {
        const int tile_col0 = col0 + t * kBN;
        ClassColumn cols[NI][2];
        float radial[NI][2];
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            cols[ni][e] = load_class_column(p.in, tile_col0 + at.col(ni, e));
            radial[ni][e] = 0.0f;
          }
        }
        float d_cos[MI][NI][4];
        Tile::compute(d_cos, sm.u.tile, p.in, row0, tile_col0, tid);  // ends with a barrier: sm.u is free
        cosine_grad(d_cos, rows, cols, p.logits, radial);
        add_radial(sm, radial, at, t, row0 == 0);
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
          for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              sm.d_cos[t][at.row(mi, i >> 1) * kGradLd + at.col(ni, i & 1)] = from_float<T>(d_cos[mi][ni][i]);
            }
          }
        }
      }
      __syncthreads();
      keep_transposed(sm, scratch, p.scratch_row_stride, row0, tiles, tid);
      add_embedding_grad(p, sm, row0, col0, tiles, first, tid);  // ends with a barrier
    }
    finish_radial(sm, tid);
#pragma unroll 1
    for (int t = 0; t < tiles; ++t) {
      add_weight_grad(p, sm, scratch + static_cast<int64_t>(t) * kBN * p.scratch_row_stride, col0 + t * kBN,
                      sm.radial + t * kBN, tid);
    }
  }

  // radial_part[wm][class] (+)= the warp row's Σ_i ∂ℓ/∂c_ij (ê_i · ŵ_j): the thread summed its rows
  // (cosine_grad); the lanes holding the warp's other rows (g = lane / 4: masks 4, 8, 16) add theirs;
  // lane g = 0 of each class writes, the same thread for every batch tile (a fixed order).
  __device__ static void add_radial(Smem& sm, float (&radial)[NI][2], const typename Tile::Coords& at, int t,
                                    bool first_rows) {
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float x = radial[ni][e];
        x = warp_sum_xor(x, 4);
        x = warp_sum_xor(x, 8);
        x = warp_sum_xor(x, 16);
        float& part = sm.radial_part[at.wm][t * kBN + at.col(ni, e)];
        if (at.g == 0) part = first_rows ? x : part + x;
      }
    }
  }

  // ŵ_j · ∂ℓ/∂ŵ_j = the sum of the warp rows' parts, in a fixed order.
  __device__ static void finish_radial(Smem& sm, int tid) {
    __syncthreads();
#pragma unroll
    for (int j = tid; j < kGroup; j += kThreads) {
      float x = sm.radial_part[0][j];
#pragma unroll
      for (int w = 1; w < kWarpsM; ++w) x += sm.radial_part[w][j];
      sm.radial[j] = x;
    }
    __syncthreads();
  }

  // scratch[t·kBN + class][row0 + r] = d_cos[t][r][class] for the tile's kBM rows (rows past B hold
  // zeros), in 16-byte pieces: thread (class, group of rows) writes kRowsPerThread consecutive rows.
  __device__ static void keep_transposed(const Smem& sm, T* scratch, int64_t ld, int row0, int tiles, int tid) {
    const int cls = tid % kBN;
    const int r0 = (tid / kBN) * kRowsPerThread;
#pragma unroll 1
    for (int t = 0; t < tiles; ++t) {
      T* out = scratch + static_cast<int64_t>(t * kBN + cls) * ld + row0 + r0;
#pragma unroll
      for (int c = 0; c < kRowsPerThread / kVec; ++c) {
        Chunk<T> chunk;
#pragma unroll
        for (int i = 0; i < kVec; ++i) chunk.v[i] = sm.d_cos[t][(r0 + c * kVec + i) * kGradLd + cls];
        *reinterpret_cast<uint4*>(out + c * kVec) = chunk.raw();
      }
    }
  }

  // ∂ℓ/∂ê[rows, columns] += Σ over the group's class tiles of ∂ℓ/∂c[rows, classes] · ŵ[classes, columns],
  // for every column chunk, then into d_e (atomically, or into the block's slice when deterministic).
  __device__ static void add_embedding_grad(const BackwardParams& p, Smem& sm, int row0, int col0, int tiles,
                                            bool first, int tid) {
    const int lane = tid & 31;
    const Coords2 at(tid);
    const int64_t slice_row0 = p.deterministic ? static_cast<int64_t>(blockIdx.x) * p.in.batch : 0;
    for (int d0 = 0; d0 < p.in.dim; d0 += kBD) {
      float acc[MI2][NI2][4];
      zero(acc);
#pragma unroll 1
      for (int t = 0; t < tiles; ++t) {
        const int tile_col0 = col0 + t * kBN;
        CopyColumns::copy(sm.u.w_cols, kColsLd, p.in.w, tile_col0, min(kBN, p.in.classes - tile_col0), d0,
                          min(kBD, p.in.dim - d0), tid, p.in.w_inv_norm);
        __syncthreads();
        warp_mma<P, MI2, NI2, true>(acc, sm.d_cos[t] + at.wm * (kBM / kWarpsM) * kGradLd, kGradLd,
                                    sm.u.w_cols + at.wn * (kBD / kWarpsN), kColsLd, kBN, lane);
        __syncthreads();
      }
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
                out_row[d] += value;  // the same thread stored this element for the block's previous groups
              }
            }
          }
        }
      }
    }
  }

  // ∂ℓ/∂ŵ[classes, columns] = ∂ℓ/∂cᵀ[classes, batch] · ê[batch, columns] for the class tile at col0
  // (its ∂ℓ/∂cᵀ at ``grad_rows`` of the scratch), then the Jacobian; stored in W's dtype.
  __device__ static void add_weight_grad(const BackwardParams& p, Smem& sm, const T* grad_rows, int col0,
                                         const float* radial, int tid) {
    const int lane = tid & 31;
    const Coords2 at(tid);
    const MatrixRef grad{grad_rows, dtype_of<T>(), p.scratch_row_stride, true};
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
          const float radial_j = radial[local_class];
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
                static_cast<int64_t>(blockIdx.x) * params.group_tiles * kBackwardClasses * params.scratch_row_stride;
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
