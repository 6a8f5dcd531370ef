// Forward partials (DESIGN §3): one fused pass over the class centers of a split.
//
// Block (row tile, split) walks the split's class tiles in increasing order. For each tile:
//   c_ij  = clamp(ê_i · ŵ_j, -1 + ε_c, 1 - ε_c), ŵ_j = W_j · w_inv_norm_j   tensor cores, fp32 accumulation
//   z_ij  = s·ν(c_ij) off the label column (the non-target logits; the label column is left out)
// and every thread folds its own elements into per-row running states — online softmax (max, Σ exp),
// the nearest negative (largest cosine off the label column, lowest index on ties) and the target
// cosine — with no synchronization between tiles. After the split, the states of the threads
// sharing a row are merged (shuffles within a quad, then shared memory across warps, in a fixed
// order: the result does not depend on scheduling) and one (split, row) entry of each Partials
// field is written.
#include <cmath>

#include "common.cuh"
#include "cosine_tile.cuh"
#include "launch.h"
#include "mma.cuh"
#include "params.h"

namespace crfiqa {
namespace {

constexpr int kWarpsM = 2;
constexpr int kWarpsN = 4;

struct RowState {
  SoftmaxState softmax;
  NearestState nearest;
  TargetState target;
};

__device__ __forceinline__ RowState merge(const RowState& a, const RowState& b) {
  return {softmax_merge(a.softmax, b.softmax), nearest_merge(a.nearest, b.nearest), target_merge(a.target, b.target)};
}

__device__ __forceinline__ RowState shfl_xor(const RowState& s, int mask) {
  return {shfl_xor(s.softmax, mask), shfl_xor(s.nearest, mask), shfl_xor(s.target, mask)};
}

template <class P>
struct ForwardKernel {
  using Tile = CosineTile<P, kForwardRows, kForwardClasses, kWarpsM, kWarpsN>;
  static constexpr int MI = Tile::MI;
  static constexpr int NI = Tile::NI;

  struct Smem {
    typename Tile::Smem tile;
    RowState rows[kWarpsN][kForwardRows];  // per-warp-column states, merged at the end
  };

  // Folds one tile (raw products in acc) into the thread's row states.
  __device__ static void fold_tile(RowState (&state)[MI][2], const float (&acc)[MI][NI][4],
                                   const int64_t (&labels)[MI][2], const ClassColumn (&cols)[NI][2],
                                   const LogitParams& logits, int batch, int row0, const typename Tile::Coords& at) {
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        RowState& st = state[mi][h];
        // The row's threshold of ν, read here (an L1 hit after the first tile) rather than held in
        // registers across the tile product.
        const int row = row0 + at.row(mi, h);
        const float threshold = row < batch ? row_threshold(logits, row) : 0.0f;
        float z[NI][2];
        float tile_max = -INFINITY;
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const ClassColumn& col = cols[ni][e];
            z[ni][e] = -INFINITY;  // no logit: the label column and columns past the shard
            if (!col.valid) continue;
            const float c = clamp_cosine(acc[mi][ni][2 * h + e], logits);
            if (labels[mi][h] == col.index) {
              st.target = {c, true};
            } else {
              // Columns reach a thread in increasing order: strictly larger wins, ties keep the first.
              if (c > st.nearest.cos) st.nearest = {c, col.index};
              z[ni][e] = logits.s * negative_value(c, threshold, logits);
              tile_max = fmaxf(tile_max, z[ni][e]);
            }
          }
        }
        // Online softmax: rescale the running sum to the new max, add this tile's terms (exp of −inf
        // is 0; a row without logits so far shifts by 0, never by −inf).
        const float new_max = fmaxf(st.softmax.max, tile_max);
        const float shift = new_max == -INFINITY ? 0.0f : new_max;
        float sum = st.softmax.sum * softmax_rescale(st.softmax.max, new_max);
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
          for (int e = 0; e < 2; ++e) sum += exp2f((z[ni][e] - shift) * kLog2e);
        }
        st.softmax = {new_max, sum};
      }
    }
  }

  __device__ static void run(const ForwardParams& p, Smem& sm) {
    const int tid = threadIdx.x;
    const typename Tile::Coords at(tid);
    const int row_tiles = ceil_div(p.in.batch, kForwardRows);
    const int row_tile = static_cast<int>(blockIdx.x % row_tiles);
    const int split = static_cast<int>(blockIdx.x / row_tiles);
    const int row0 = row_tile * kForwardRows;
    const int class_tiles = ceil_div(p.in.classes, kForwardClasses);
    const int first_tile = split * p.tiles_per_split;
    const int last_tile = min(first_tile + p.tiles_per_split, class_tiles);

    int64_t labels[MI][2];
    RowState state[MI][2];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + at.row(mi, h);
        labels[mi][h] = row < p.in.batch ? p.in.labels[row] : -1;
        state[mi][h] = {{-INFINITY, 0.0f}, {-INFINITY, first_tile * kForwardClasses}, {NAN, false}};
      }
    }

    for (int tile = first_tile; tile < last_tile; ++tile) {
      const int col0 = tile * kForwardClasses;
      float acc[MI][NI][4];
      Tile::compute(acc, sm.tile, p.in, row0, col0, tid);
      ClassColumn cols[NI][2];
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
        for (int e = 0; e < 2; ++e) cols[ni][e] = load_class_column(p.in, col0 + at.col(ni, e));
      }
      fold_tile(state, acc, labels, cols, p.logits, p.in.batch, row0, at);
    }

    // Merge the four threads of a quad (same rows, other columns), then the warps along the classes.
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        RowState& st = state[mi][h];
        st = merge(st, shfl_xor(st, 1));
        st = merge(st, shfl_xor(st, 2));
        if (at.t == 0) sm.rows[at.wn][at.row(mi, h)] = st;
      }
    }
    __syncthreads();
    if (tid < kForwardRows && row0 + tid < p.in.batch) {
      RowState st = sm.rows[0][tid];
#pragma unroll
      for (int w = 1; w < kWarpsN; ++w) st = merge(st, sm.rows[w][tid]);
      const int64_t out = static_cast<int64_t>(split) * p.in.batch + row0 + tid;
      p.row_max[out] = st.softmax.max;
      p.row_sumexp[out] = st.softmax.sum;
      p.target_cos[out] = st.target.found ? st.target.cos : NAN;
      // A NaN cosine poisons the sum but is skipped by the nearest-negative comparisons: report it.
      p.nn_cos[out] = isnan(st.softmax.sum) ? NAN : st.nearest.cos;
      p.nn_index[out] = st.nearest.index;
    }
  }
};

// Blocks per multiprocessor the register budget is set for: two (at most 128 registers a thread)
// for the 16-bit products on sm_90, which fit in them without spilling; one elsewhere: the tf32
// products (whose fp32 fragments, split in two for 3xTF32, spill at 128) and sm_80's 16-bit code,
// where the per-row negative-transform threshold and clamp bounds cost 4 bytes of spill at 128.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int kHalfForwardMinBlocks = 2;
#else
constexpr int kHalfForwardMinBlocks = 1;
#endif
template <class P>
constexpr int kForwardMinBlocks = sizeof(typename P::T) == 2 ? kHalfForwardMinBlocks : 1;

template <class P>
__global__ void __launch_bounds__(kThreads, kForwardMinBlocks<P>) forward_partials_kernel(const ForwardParams params) {
  __shared__ __align__(16) unsigned char smem[sizeof(typename ForwardKernel<P>::Smem)];
  ForwardKernel<P>::run(params, *reinterpret_cast<typename ForwardKernel<P>::Smem*>(smem));
}

}  // namespace

cudaError_t launch_forward_partials(int policy, const ForwardParams& params, cudaStream_t stream) {
  return with_policy(policy, [&](auto p) {
    using P = decltype(p);
    const int blocks = ceil_div(params.in.batch, kForwardRows) * params.splits;
    forward_partials_kernel<P><<<blocks, kThreads, 0, stream>>>(params);
    return cudaGetLastError();
  });
}

cudaError_t probe_forward_partials() {
  return with_each_policy([](auto p) {
    cudaFuncAttributes attributes;
    return cudaFuncGetAttributes(&attributes, forward_partials_kernel<decltype(p)>);
  });
}

}  // namespace crfiqa
