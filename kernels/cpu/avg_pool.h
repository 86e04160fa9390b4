// AvgPoolPatchesRef: the projector's average pooling on the patch grid (spec §5). The flat patch
// sequence [side·side, d] is the grid it came from (patch p = row·side + col); each output token
// t = i·(side/kernel) + j averages the kernel × kernel patches of rows kernel·i … and columns
// kernel·j …. kernel = patches_per_side / √mm_tokens_per_image (4 for Gemma 3 at 896 px), taken
// from the config by the caller, never assumed. Sums in double, divided by kernel².
#pragma once

#include <cstdint>

namespace vlmserve {

struct AvgPoolPatchesArgs {
  const float* x = nullptr;  // [n, side * side, d]
  float* y = nullptr;        // [n, (side / kernel)², d]
  int64_t n = 0, side = 0, kernel = 0, d = 0;
};

void AvgPoolPatchesRef(const AvgPoolPatchesArgs& args);

}  // namespace vlmserve
