// The launchers of the two kernels: the only callers of the kernels, called only by the bindings
// after those validated every parameter. Each returns the CUDA error of its launch (cudaSuccess).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "params.h"

namespace crfiqa {

constexpr int kThreads = 256;

// Forward partials: a block owns kForwardRows rows and walks the class tiles of its split.
constexpr int kForwardRows = 64;
constexpr int kForwardClasses = 128;

// Backward (backward.cu): a block owns groups of class tiles of kBackwardClasses classes and walks the
// batch in tiles of kBackwardRows rows; the second products run kBackwardColumns embedding columns at a
// time.
constexpr int kBackwardRows = 64;
constexpr int kBackwardClasses = 64;
constexpr int kBackwardColumns = 256;

// Class tiles per group for a compute dtype of ``element_bytes``: as many as the group's ∂ℓ/∂c tiles
// in shared memory allow beside the other buffers on an sm_80 (163 KiB a block): 8 in 16 bits, 4 in 32.
__host__ __device__ constexpr int backward_group_tiles(size_t element_bytes) { return element_bytes == 2 ? 8 : 4; }

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The backward's dynamic shared memory starts with its fixed buffers (``bytes`` of them), rounded up
// to 16 bytes; the scratch, when it lives in shared memory, follows.
__host__ __device__ constexpr int64_t backward_static_shared_bytes(size_t bytes) {
  return static_cast<int64_t>((bytes + 15) / 16 * 16);
}

// The backward's fixed shared memory for ``policy`` (0 for an unknown policy); no CUDA call.
int64_t backward_shared_bytes(int policy);

// Grid: ceil(B / kForwardRows) · splits blocks.
cudaError_t launch_forward_partials(int policy, const ForwardParams& params, cudaStream_t stream);

// Grid: ``blocks`` blocks of ``shared_bytes`` dynamic shared memory (BackwardPlan); ``device`` is the
// current device (the kernel's shared-memory attribute is set once per device and size).
cudaError_t launch_backward(int device, int policy, const BackwardParams& params, int blocks, int64_t shared_bytes,
                            cudaStream_t stream);

// cudaSuccess when the current device can run every instantiation of the kernel family (the
// binary holds an image for it); cudaErrorNoKernelImageForDevice or another error otherwise.
cudaError_t probe_forward_partials();
cudaError_t probe_backward();

}  // namespace crfiqa
