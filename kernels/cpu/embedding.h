// EmbeddingRef: y[t] = E[ids[t]] · scale (spec §6.1). The scale is √hidden_size cast to the
// compute dtype, as transformers does (`embed_scale.to(weight.dtype)`): in fp32 (this oracle)
// float32(√D); in bf16 the CUDA runner passes bf16(√D) (50.5 for the 4B model). Positions the
// caller marks as image soft tokens are left untouched (they are overwritten, spec §3.6).
#pragma once

#include <cstdint>

namespace vlmserve {

struct EmbeddingArgs {
  const float* table = nullptr;  // [vocab, dim]
  const int32_t* ids = nullptr;  // [tokens], each in [0, vocab)
  const uint8_t* skip = nullptr; // [tokens], 1 = leave y[t] as it is; null = none
  float* y = nullptr;            // [tokens, dim]
  int64_t tokens = 0, dim = 0;
  float scale = 1.0f;
};

void EmbeddingRef(const EmbeddingArgs& args);

}  // namespace vlmserve
