// Launch planning: pure functions of the problem's sizes and the device's limits (no CUDA call),
// shared by the launchers and by Python (crfiqa_kernels._C.plan_forward / plan_backward), so that the
// grids can be checked at any size on a machine without a GPU. Every grid is one-dimensional and its
// axis 0 stays below 2^31 (CUDA's limit); axes 1 and 2 are always 1.
#pragma once

#include <cstdint>

namespace crfiqa {

// Limits of a device that the plans depend on.
struct DeviceLimits {
  int64_t multiprocessors;
  int64_t max_shared_bytes;  // dynamic shared memory a block may opt into
};

struct ForwardPlan {
  int64_t blocks;           // grid axis 0: ceil(B / kForwardRows) · splits
  int64_t tiles_per_split;  // class tiles of kForwardClasses per split; the last split is never empty
};

// ValueError for an empty or oversized split count, or a grid past 2^31 − 1 blocks.
ForwardPlan plan_forward(int64_t batch, int64_t classes, int64_t splits);

// Blocks per multiprocessor the backward aims for, when their shared memory allows.
constexpr int64_t kBackwardBlocksPerSm = 2;

struct BackwardPlan {
  int64_t group_classes;       // classes of a group: 1 … backward_group_tiles class tiles of kBackwardClasses
  int64_t groups;              // class groups; block b takes groups b, b + blocks, …
  int64_t blocks;              // grid axis 0, ≤ the groups
  bool scratch_in_shared;      // ∂ℓ/∂cᵀ of a group (group_classes × B) fits beside the buffers
  int64_t scratch_row_stride;  // elements per scratch row: B rounded up to kBackwardRows, plus 16 bytes
  int64_t scratch_elements;    // global scratch in the compute dtype: blocks · group_classes rows, or 0
  int64_t shared_bytes;        // dynamic shared memory of a block
  int64_t d_e_rows;            // rows of the float32 d_e: B, or blocks · B (one slice per block) when deterministic
};

// ``requested_blocks`` = 0 lets the plan fill the device (kBackwardBlocksPerSm per multiprocessor, as
// far as shared memory allows). The group size balances the blocks' work against the dê atomics (one
// per group, row and column); the blocks are then capped by the groups and by two memory bounds, with at least one
// block: the global scratch takes at most 4 · C · D bytes (a float32 dW), the deterministic slices of
// d_e at most C · D floats. ValueError for a bad policy, size or request; RuntimeError when the device cannot hold
// the fixed buffers.
BackwardPlan plan_backward(int policy, int64_t batch, int64_t classes, int64_t dim, bool deterministic,
                           const DeviceLimits& limits, int64_t requested_blocks);

}  // namespace crfiqa
