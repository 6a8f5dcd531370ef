// Tensor-core tile products with mma.sync (sm_80 and later; also what runs on sm_90a).
//
// A policy fixes the shared-memory element type, the k-step of one mma and how fragments are read.
// Operands live in shared memory:
//   A (M × K) row-major, K contiguous: a[m * lda + k];
//   B either K-major (b[n * ldb + k], B's columns contiguous: the layout of W and ê rows) or
//   N-major (b[k * ldb + n]).
// Accumulators (fp32) follow the PTX m16n8 C layout: with g = lane / 4 and t = lane % 4, c[0..1] sit
// at (row g, columns 2t, 2t+1), c[2..3] at (row g + 8, the same columns).
// Row strides are padded by 16 bytes (kPad elements) so that the fragment reads are free of bank
// conflicts for the tile widths used here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cuda_runtime_api.h>

#include <cstdint>

#include "params.h"

namespace crfiqa {

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}

// ---------------------------------------------------------------------------------------------
// bf16 / fp16: m16n8k16. Fragments come from ldmatrix (four 8×8 b16 matrices per instruction);
// thread l receives row l / 4, columns 2(l % 4), 2(l % 4) + 1 of each matrix (.trans: the transpose).
// ---------------------------------------------------------------------------------------------

template <typename Element>
struct HalfPolicy {
  using T = Element;
  static constexpr int kStep = 16;
  static constexpr int kPad = 8;
  struct FragA { uint32_t r[4]; };
  struct FragB { uint32_t r[2]; };

  // A rows m0..m0+15, columns k..k+15: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
  // (rows 0-7, k 8-15), (rows 8-15, k 8-15) give a0..a3; lane l addresses row l % 8 of matrix l / 8.
  __device__ static void load_a(FragA& f, const T* a, int lda, int k, int lane) {
    const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
    const int col = k + (lane >> 4) * 8;
    ldmatrix_x4(f.r, a + row * lda + col);
  }

  // Two n-tiles (n0..n0+7, n0+8..n0+15) of a K-major B: b0/b1 of the first tile are its rows at
  // k 0-7 / 8-15, then the same for the second tile.
  __device__ static void load_b_pair_kmajor(FragB& f0, FragB& f1, const T* b, int ldb, int k, int lane) {
    const int row = (lane & 7) + (lane >> 4) * 8;
    const int col = k + ((lane >> 3) & 1) * 8;
    uint32_t r[4];
    ldmatrix_x4(r, b + row * ldb + col);
    f0.r[0] = r[0]; f0.r[1] = r[1]; f1.r[0] = r[2]; f1.r[1] = r[3];
  }

  // Two n-tiles of an N-major B: the matrices are (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15),
  // (k 8-15, n 8-15), read transposed so that each register holds B[2t][g], B[2t + 1][g].
  __device__ static void load_b_pair_nmajor(FragB& f0, FragB& f1, const T* b, int ldb, int k, int lane) {
    const int row = k + (lane & 7) + ((lane >> 3) & 1) * 8;
    const int col = (lane >> 4) * 8;
    uint32_t r[4];
    ldmatrix_x4_trans(r, b + row * ldb + col);
    f0.r[0] = r[0]; f0.r[1] = r[1]; f1.r[0] = r[2]; f1.r[1] = r[3];
  }

  __device__ static void mma(float (&c)[4], const FragA& a, const FragB& b);
};

template <>
__device__ __forceinline__ void HalfPolicy<__half>::mma(float (&c)[4], const FragA& a, const FragB& b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
}

template <>
__device__ __forceinline__ void HalfPolicy<__nv_bfloat16>::mma(float (&c)[4], const FragA& a, const FragB& b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
}

// ---------------------------------------------------------------------------------------------
// fp32: m16n8k8 tf32. Fragments are single elements: a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4],
// a3 = A[g+8][t+4]; b0 = B[k=t][n=g], b1 = B[k=t+4][n=g]. With kSplit, each operand x becomes
// big = tf32(x) and small = tf32(x − big), and a·b ≈ small_a·big_b + big_a·small_b + big_a·big_b
// (the small·small term is below fp32 resolution), smallest terms first.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

template <bool kSplit>
struct Tf32Policy {
  using T = float;
  static constexpr int kStep = 8;
  static constexpr int kPad = 4;
  static constexpr int kParts = kSplit ? 2 : 1;
  struct FragA { uint32_t big[4]; uint32_t small[kParts == 2 ? 4 : 1]; };
  struct FragB { uint32_t big[2]; uint32_t small[kParts == 2 ? 2 : 1]; };

  template <int N>
  __device__ static void split(const float (&x)[N], uint32_t (&big)[N], uint32_t (&small)[kParts == 2 ? N : 1]) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      big[i] = to_tf32(x[i]);
      if constexpr (kSplit) small[i] = to_tf32(x[i] - __uint_as_float(big[i]));
    }
  }

  __device__ static void load_a(FragA& f, const T* a, int lda, int k, int lane) {
    const int g = lane >> 2, t = lane & 3;
    const float x[4] = {a[g * lda + k + t], a[(g + 8) * lda + k + t], a[g * lda + k + t + 4],
                        a[(g + 8) * lda + k + t + 4]};
    split(x, f.big, f.small);
  }

  __device__ static void load_b_kmajor(FragB& f, const T* b, int ldb, int k, int lane) {
    const int g = lane >> 2, t = lane & 3;
    const float x[2] = {b[g * ldb + k + t], b[g * ldb + k + t + 4]};
    split(x, f.big, f.small);
  }

  __device__ static void load_b_nmajor(FragB& f, const T* b, int ldb, int k, int lane) {
    const int g = lane >> 2, t = lane & 3;
    const float x[2] = {b[(k + t) * ldb + g], b[(k + t + 4) * ldb + g]};
    split(x, f.big, f.small);
  }

  __device__ static void load_b_pair_kmajor(FragB& f0, FragB& f1, const T* b, int ldb, int k, int lane) {
    load_b_kmajor(f0, b, ldb, k, lane);
    load_b_kmajor(f1, b + 8 * ldb, ldb, k, lane);
  }

  __device__ static void load_b_pair_nmajor(FragB& f0, FragB& f1, const T* b, int ldb, int k, int lane) {
    load_b_nmajor(f0, b, ldb, k, lane);
    load_b_nmajor(f1, b + 8, ldb, k, lane);
  }

  __device__ static void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }

  __device__ static void mma(float (&c)[4], const FragA& a, const FragB& b) {
    if constexpr (kSplit) {
      mma_tf32(c, a.small, b.big);
      mma_tf32(c, a.big, b.small);
    }
    mma_tf32(c, a.big, b.big);
  }
};

// ---------------------------------------------------------------------------------------------
// One warp's share of a block product over a K extent held in shared memory:
// acc[mi][ni] += A[16 mi .. 16 mi + 15, 0..K) · B[0..K, 8 ni .. 8 ni + 7]
// with ``a`` at the warp's first row and ``b`` at the warp's first column (n). K is a multiple of
// P::kStep (the tiles are zero-padded), NI is even.
// ---------------------------------------------------------------------------------------------

template <class P, int MI, int NI, bool kBNMajor>
__device__ __forceinline__ void warp_mma(float (&acc)[MI][NI][4], const typename P::T* a, int lda,
                                         const typename P::T* b, int ldb, int k_extent, int lane) {
  static_assert(NI % 2 == 0, "n-tiles are read in pairs");
#pragma unroll 2
  for (int k = 0; k < k_extent; k += P::kStep) {
    typename P::FragA fa[MI];
    typename P::FragB fb[NI];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) P::load_a(fa[mi], a + mi * 16 * lda, lda, k, lane);
#pragma unroll
    for (int ni = 0; ni < NI; ni += 2) {
      if constexpr (kBNMajor) {
        P::load_b_pair_nmajor(fb[ni], fb[ni + 1], b + ni * 8, ldb, k, lane);
      } else {
        P::load_b_pair_kmajor(fb[ni], fb[ni + 1], b + ni * 8 * ldb, ldb, k, lane);
      }
    }
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) P::mma(acc[mi][ni], fa[mi], fb[ni]);
    }
  }
}

template <int MI, int NI>
__device__ __forceinline__ void zero(float (&acc)[MI][NI][4]) {
#pragma unroll
  for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mi][ni][i] = 0.0f;
    }
  }
}

// Calls f(policy object) with the policy type named by the runtime code (params.h).
template <class F>
cudaError_t with_policy(int policy, F&& f) {
  switch (policy) {
    case kPolicyFloat16: return f(HalfPolicy<__half>{});
    case kPolicyBFloat16: return f(HalfPolicy<__nv_bfloat16>{});
    case kPolicyTf32: return f(Tf32Policy<false>{});
    case kPolicy3xTf32: return f(Tf32Policy<true>{});
    default: return cudaErrorInvalidValue;
  }
}

// Every policy, for probes that must find an image of each instantiation.
template <class F>
cudaError_t with_each_policy(F&& f) {
  for (int policy : {kPolicyFloat16, kPolicyBFloat16, kPolicyTf32, kPolicy3xTf32}) {
    const cudaError_t err = with_policy(policy, f);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace crfiqa
