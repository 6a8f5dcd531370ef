// Global → shared copies of matrix tiles, converted to the shared-memory element type.
//
// A tile is ROWS × COLS elements of a row-major matrix starting at (row0, col0); only rows < rows
// and columns < cols (the valid extent, possibly smaller than the tile) are read, everything else is
// written as zero, so no global access ever leaves the matrix whatever its sizes. With ``row_scale``
// each valid row is multiplied by row_scale[row] in float before the conversion (W's rows by
// 1/‖W_j‖: float16 holds no raw W of norm ≳ 6.5e4); row_scale is read for valid rows only. Work is split in
// 16-byte chunks of the shared tile (kVec elements); a chunk is read with vector loads when it lies
// wholly inside the valid extent and the matrix allows aligned vectors, element by element otherwise.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common.cuh"
#include "params.h"

namespace crfiqa {

// 16 bytes of shared-memory elements.
template <typename T>
struct alignas(16) Chunk {
  static constexpr int kVec = 16 / sizeof(T);
  T v[kVec];

  __device__ __forceinline__ uint4 raw() const { return *reinterpret_cast<const uint4*>(v); }
};

// kN consecutive source elements (16-byte aligned when kN·sizeof(S) ≥ 16, 8-byte otherwise).
template <typename S, int kN>
__device__ __forceinline__ void load_vector(const S* p, S (&out)[kN]) {
  constexpr int kBytes = kN * static_cast<int>(sizeof(S));
  static_assert(kBytes == 8 || kBytes % 16 == 0, "vector width");
  if constexpr (kBytes == 8) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    memcpy(out, &raw, 8);
  } else {
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i) {
      const uint4 raw = reinterpret_cast<const uint4*>(p)[i];
      memcpy(reinterpret_cast<char*>(out) + 16 * i, &raw, 16);
    }
  }
}

template <typename T, typename S>
__device__ __forceinline__ void load_chunk_typed(Chunk<T>& c, const S* src, int valid, bool vector, float scale) {
  constexpr int kVec = Chunk<T>::kVec;
  if (vector && valid >= kVec) {
    S x[kVec];
    load_vector(src, x);
#pragma unroll
    for (int i = 0; i < kVec; ++i) c.v[i] = from_float<T>(to_float(x[i]) * scale);
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      float x = 0.0f;
      if (i < valid) x = to_float(src[i]) * scale;  // never read past the valid extent
      c.v[i] = from_float<T>(x);
    }
  }
}

// The chunk at (row, col) of ``m``: ``valid`` of its elements lie inside the matrix (≤ 0: none).
template <typename T>
__device__ __forceinline__ void load_chunk(Chunk<T>& c, const MatrixRef& m, int64_t row, int64_t col, int valid,
                                           const float* row_scale) {
  if (valid <= 0) {
#pragma unroll
    for (int i = 0; i < Chunk<T>::kVec; ++i) c.v[i] = from_float<T>(0.0f);
    return;
  }
  const int64_t offset = row * m.row_stride + col;
  const float scale = row_scale != nullptr ? row_scale[row] : 1.0f;
  switch (m.dtype) {
    case kFloat16:
      load_chunk_typed(c, static_cast<const __half*>(m.ptr) + offset, valid, m.vector_ok, scale);
      break;
    case kBFloat16:
      load_chunk_typed(c, static_cast<const __nv_bfloat16*>(m.ptr) + offset, valid, m.vector_ok, scale);
      break;
    default:
      load_chunk_typed(c, static_cast<const float*>(m.ptr) + offset, valid, m.vector_ok, scale);
      break;
  }
}

// A ROWS × COLS tile copied by THREADS threads; ``ld`` is the shared row stride in elements
// (a multiple of kVec). Chunks are numbered row by row, so consecutive threads read consecutive
// 16-byte pieces of a row (coalesced).
template <typename T, int ROWS, int COLS, int THREADS>
struct TileCopy {
  static constexpr int kVec = Chunk<T>::kVec;
  static_assert(COLS % kVec == 0, "tile width must be a whole number of 16-byte chunks");
  static constexpr int kChunksPerRow = COLS / kVec;
  static constexpr int kChunks = ROWS * kChunksPerRow;
  static constexpr int kPerThread = (kChunks + THREADS - 1) / THREADS;

  // Staged copy, for software pipelining: load() issues the global reads into registers, store()
  // writes them to shared memory later.
  Chunk<T> stage[kPerThread];

  __device__ __forceinline__ void load(const MatrixRef& m, int64_t row0, int rows, int64_t col0, int cols, int tid,
                                       const float* row_scale = nullptr) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int chunk = tid + i * THREADS;
      const int r = chunk / kChunksPerRow;
      const int c = (chunk % kChunksPerRow) * kVec;
      const int valid = (chunk < kChunks && r < rows) ? cols - c : 0;
      load_chunk(stage[i], m, row0 + r, col0 + c, valid, row_scale);
    }
  }

  __device__ __forceinline__ void store(T* smem, int ld, int tid) const {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int chunk = tid + i * THREADS;
      if (chunk < kChunks) {
        const int r = chunk / kChunksPerRow;
        const int c = (chunk % kChunksPerRow) * kVec;
        *reinterpret_cast<uint4*>(smem + r * ld + c) = stage[i].raw();
      }
    }
  }

  // Unstaged copy, one chunk at a time (for tiles too large to stage in registers).
  __device__ static void copy(T* smem, int ld, const MatrixRef& m, int64_t row0, int rows, int64_t col0, int cols,
                              int tid, const float* row_scale = nullptr) {
#pragma unroll 4
    for (int chunk = tid; chunk < kChunks; chunk += THREADS) {
      const int r = chunk / kChunksPerRow;
      const int c = (chunk % kChunksPerRow) * kVec;
      Chunk<T> value;
      load_chunk(value, m, row0 + r, col0 + c, r < rows ? cols - c : 0, row_scale);
      *reinterpret_cast<uint4*>(smem + r * ld + c) = value.raw();
    }
  }
};

}  // namespace crfiqa
