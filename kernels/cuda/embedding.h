// Embedding gather on the device (spec §6.1): y[t] = bf16( E[ids[t]] · scale ), the product in fp32
// and rounded once — exactly transformers' bf16 `embed_tokens(ids) * embed_scale.to(bf16)`, given
// scale = bf16(√hidden_size) (50.5 for the 4B model). Tokens marked in `skip` (image soft-token
// positions, overwritten later, spec §3.6) are left untouched. Ids must be checked against the
// vocabulary by the caller; as a last line of defence an out-of-range id yields a zero row, never a
// read outside the table. Reference: kernels/cpu/embedding (EmbeddingRef).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct EmbeddingArgs {
  const __nv_bfloat16* table = nullptr;  // [vocab, dim]
  const int32_t* ids = nullptr;          // [tokens] (device)
  const uint8_t* skip = nullptr;         // [tokens], 1 = leave y[t]; null = none (device)
  __nv_bfloat16* y = nullptr;            // [tokens, dim]
  int64_t tokens = 0, dim = 0, vocab = 0;
  float scale = 1.0f;
};
Status Embedding(const EmbeddingArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
