// MultiModalProjector: SigLIP patches → language-model soft tokens (spec §5), fp32 on the CPU:
//   [n, side², d] → average-pool kernel × kernel on the side × side patch grid → [n, T, d]
//   → Gemma RMSNorm (1 + w), eps = vision layer_norm_eps → · W [d, D] (input-major, x · W)
//   → [n, T, D].
// kernel = patches_per_side / √mm_tokens_per_image comes from the config (4 for Gemma 3 at 896 px).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "model/weights/checkpoint.h"
#include "model/weights/config.h"

namespace vlmserve {

class MultiModalProjector {
 public:
  static StatusOr<MultiModalProjector> Load(const Checkpoint& ck, const Gemma3Config& config);
  // vision_output [n, P, d] → soft tokens [n, T, D].
  StatusOr<std::vector<float>> Forward(std::span<const float> vision_output, int64_t n) const;

 private:
  int64_t side_ = 0, kernel_ = 0, d_ = 0, out_dim_ = 0, tokens_ = 0;
  float eps_ = 1e-6f;
  std::vector<float> norm_w_, proj_w_;  // [d], [d, D]
};

}  // namespace vlmserve
