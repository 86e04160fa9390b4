// RmsNormRef: Gemma's RMSNorm, y = x · rsqrt(mean(x²) + eps) · (1 + w), all in fp32 or better
// (spec §6.3). Stored weights are zero-centred: the (1 + w) offset is applied here, never to the
// file. Used by the projector's mm_soft_emb_norm (spec §5) and every decoder norm (spec §6.2-6.4).
#pragma once

#include <cstdint>

namespace vlmserve {

struct RmsNormArgs {
  const float* x = nullptr;  // [rows, dim]
  const float* w = nullptr;  // [dim], zero-centred
  float* y = nullptr;        // [rows, dim]; may equal x
  int64_t rows = 0, dim = 0;
  float eps = 1e-6f;
};

void RmsNormRef(const RmsNormArgs& args);

}  // namespace vlmserve
