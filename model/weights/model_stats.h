// What a Gemma 3 model costs, computed from its config alone (spec §10): parameters per component,
// weight memory in bf16 and fp8, and KV-cache bytes per token. vlmserve-inspect prints these; the
// loader (issue 3) will check real checkpoints against them.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "model/weights/config.h"

namespace vlmserve {

struct ParameterCounts {
  uint64_t vision_tower = 0;    // SigLIP, incl. the (unused) pooling head when config builds it
  uint64_t projector = 0;       // mm_input_projection_weight + mm_soft_emb_norm
  uint64_t language_model = 0;  // embedding + decoder layers + final norm
  uint64_t embedding = 0;       // embed_tokens (also the LM head when tied); part of language_model
  uint64_t lm_head = 0;         // 0 when tied to the embedding
  uint64_t total = 0;           // what transformers' model.parameters() sums to
  // Parameters in the matrices of linear layers (q/k/v/o, MLPs, patch conv, projector, untied LM
  // head): what FP8 weight quantization would store in 1 byte. Embeddings, position tables, norms
  // and biases stay bf16.
  uint64_t linear_weights = 0;
};

// INVALID_ARGUMENT if any product overflows 64 bits (configs are untrusted).
StatusOr<ParameterCounts> CountParameters(const Gemma3Config& config);

struct MemoryEstimate {
  uint64_t weights_bf16_bytes = 0;  // every parameter in bf16 (the hub checkpoint's payload)
  uint64_t weights_fp8_bytes = 0;   // linear_weights in 1 byte, the rest in bf16 (scales ignored)
  uint64_t kv_bytes_per_token_per_layer = 0;  // bf16 K and V: 2 · kv_heads · head_dim · 2 bytes
  uint64_t kv_bytes_per_token = 0;            // summed over all layers
};

StatusOr<MemoryEstimate> EstimateMemory(const Gemma3Config& config);

// bf16 KV-cache bytes for one sequence of `context` tokens: global layers keep every token, sliding
// layers at most sliding_window tokens (spec §7.4).
StatusOr<uint64_t> KvCacheBytes(const Gemma3Config& config, uint64_t context);

}  // namespace vlmserve
