// PatchEmbedRef: SigLIP's patch embedding (spec §4 step 1), Conv2d(c → d, kernel p, stride p,
// "valid") written as im2col + GEMM: patch q = row·(s/p) + col becomes the vector of its c·p·p
// pixels in (channel, ky, kx) order — the layout of the conv weight [d, c, p, p] — and
// y[q] = patch · Wᵀ + b. Position embeddings are added by the caller (spec §4 step 2).
#pragma once

#include <cstdint>

namespace vlmserve {

struct PatchEmbedArgs {
  const float* pixels = nullptr;  // [n, c, s, s]
  const float* w = nullptr;       // [d, c, p, p]
  const float* b = nullptr;       // [d]
  float* y = nullptr;             // [n, (s / p)², d]
  int64_t n = 0, c = 0, s = 0, p = 0, d = 0;
};

void PatchEmbedRef(const PatchEmbedArgs& args);

}  // namespace vlmserve
