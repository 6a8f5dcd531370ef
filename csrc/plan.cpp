#include "plan.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "abi.h"
#include "checks.h"
#include "launch.h"

namespace crfiqa {
namespace {

int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_size(const char* name, int64_t value) {
  if (value < 1 || value > kMaxExtent) {
    value_error(std::string(name) + ": must lie in [1, " + std::to_string(kMaxExtent) + "], got " +
                std::to_string(value));
  }
}

// Class tiles per group: with ``blocks`` blocks taking groups in turn, the time of the busiest block
// is ceil(groups / blocks) · group tiles; the largest group (the fewest dê atomics) whose time is
// within 1/8 of the best.
int64_t backward_group_tiles_for(int64_t class_tiles, int64_t blocks, int64_t most) {
  const auto busiest = [&](int64_t g) { return ceil_div64(ceil_div64(class_tiles, g), blocks) * g; };
  int64_t best = busiest(1);
  for (int64_t g = 2; g <= most; ++g) best = std::min(best, busiest(g));
  int64_t chosen = 1;
  for (int64_t g = 1; g <= most; ++g) {
    if (8 * busiest(g) <= 9 * best) chosen = g;
  }
  return chosen;
}

void check_grid(int64_t blocks) {
  if (blocks > INT32_MAX) value_error("the launch grid (" + std::to_string(blocks) + " blocks) exceeds 2^31 - 1");
}

}  // namespace

ForwardPlan plan_forward(int64_t batch, int64_t classes, int64_t splits) {
  check_size("batch", batch);
  check_size("classes", classes);
  const int64_t class_tiles = ceil_div64(classes, kForwardClasses);
  if (splits < 1 || splits > class_tiles) {
    value_error("splits: must lie in [1, " + std::to_string(class_tiles) + "] (the class tiles), got " +
                std::to_string(splits));
  }
  const int64_t per_split = ceil_div64(class_tiles, splits);
  if ((splits - 1) * per_split >= class_tiles) {
    value_error("splits: " + std::to_string(splits) + " splits of " + std::to_string(class_tiles) +
                " class tiles would leave the last one empty; use " + std::to_string(ceil_div64(class_tiles, per_split)));
  }
  const int64_t blocks = ceil_div64(batch, kForwardRows) * splits;
  check_grid(blocks);
  return {blocks, per_split};
}

BackwardPlan plan_backward(int policy, int64_t batch, int64_t classes, int64_t dim, bool deterministic,
                           const DeviceLimits& limits, int64_t requested_blocks) {
  const int64_t element = element_size(policy_input_dtype(policy));
  check_size("batch", batch);
  check_size("classes", classes);
  check_size("dim", dim);
  if (limits.multiprocessors < 1) value_error("multiprocessors: must be ≥ 1");
  if (requested_blocks < 0) value_error("blocks: must be ≥ 0 (0: fill the device), got " + std::to_string(requested_blocks));
  const int64_t fixed = backward_shared_bytes(policy);
  if (fixed > limits.max_shared_bytes) {
    throw std::runtime_error("the backward needs " + std::to_string(fixed) + " bytes of shared memory per block; the device allows " +
                             std::to_string(limits.max_shared_bytes));
  }
  BackwardPlan plan{};
  plan.scratch_row_stride = ceil_div64(batch, kBackwardRows) * kBackwardRows + 16 / element;
  const int64_t class_tiles = ceil_div64(classes, kBackwardClasses);
  const int64_t per_sm = std::clamp<int64_t>(limits.max_shared_bytes / fixed, 1, kBackwardBlocksPerSm);
  const int64_t wanted = requested_blocks > 0 ? requested_blocks : per_sm * limits.multiprocessors;
  const int64_t group_tiles = backward_group_tiles_for(class_tiles, wanted, backward_group_tiles(element));
  plan.group_classes = group_tiles * kBackwardClasses;
  const int64_t scratch_bytes = plan.group_classes * plan.scratch_row_stride * element;
  plan.scratch_in_shared = fixed + scratch_bytes <= limits.max_shared_bytes;
  plan.shared_bytes = fixed + (plan.scratch_in_shared ? scratch_bytes : 0);

  plan.groups = ceil_div64(class_tiles, group_tiles);
  int64_t blocks = std::min(wanted, plan.groups);
  if (!plan.scratch_in_shared) {
    // The global scratch takes at most the bytes of a float32 dW (4 · C · D).
    blocks = std::min(blocks, std::max<int64_t>(1, 4 * classes * dim / scratch_bytes));
  }
  if (deterministic) blocks = std::min(blocks, std::max<int64_t>(1, classes / batch));
  plan.blocks = blocks;
  plan.scratch_elements = plan.scratch_in_shared ? 0 : plan.blocks * plan.group_classes * plan.scratch_row_stride;
  plan.d_e_rows = deterministic ? plan.blocks * batch : batch;
  check_grid(plan.blocks);
  return plan;
}

}  // namespace crfiqa
