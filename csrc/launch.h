// The launchers of the three kernels: the only callers of the kernels, called only by the bindings
// after those validated every parameter. Each returns the CUDA error of its launch (cudaSuccess).
#pragma once

#include <cuda_runtime_api.h>

#include "params.h"

namespace crfiqa {

constexpr int kThreads = 256;

// Forward partials: a block owns kForwardRows rows and walks the class tiles of its split.
constexpr int kForwardRows = 64;
constexpr int kForwardClasses = 128;

// Backward: cosine tiles of kBackwardRows × kBackwardClasses; dW and dê are produced
// kBackwardColumns embedding columns at a time (the cosines are recomputed per column chunk).
constexpr int kBackwardRows = 64;
constexpr int kBackwardClasses = 64;
constexpr int kBackwardColumns = 256;

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Grid: ceil(B / kForwardRows) · splits blocks.
cudaError_t launch_forward_partials(int policy, const ForwardParams& params, cudaStream_t stream);

// Grid: ceil(D / kBackwardColumns) · ceil(C / kBackwardClasses) blocks; deterministic (no atomics).
cudaError_t launch_backward_dweight(int policy, const DWeightParams& params, cudaStream_t stream);

// Grid: ceil(D / kBackwardColumns) · ceil(B / kBackwardRows) · splits blocks.
cudaError_t launch_backward_dembedding(int policy, const DEmbeddingParams& params, cudaStream_t stream);

// cudaSuccess when the current device can run every instantiation of the kernel family (the
// binary holds an image for it); cudaErrorNoKernelImageForDevice or another error otherwise.
cudaError_t probe_forward_partials();
cudaError_t probe_backward_dweight();
cudaError_t probe_backward_dembedding();

}  // namespace crfiqa
