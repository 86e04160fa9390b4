// Gemma3Decoder: the Gemma 3 text decoder (spec §6) in fp32 on the CPU — the oracle for the CUDA
// runner — with a per-sequence KV cache.
//
// Per layer (sandwich norms, spec §6.2):
//   a = RMSNorm_in(x); q,k,v = a·Wᵀ; q,k = RMSNorm_{q,k} per head; RoPE(q, k) by layer type;
//   cache k, v; o = attention(q, K, V; mask, scale = query_pre_attn_scalar^-0.5, GQA) · Woᵀ;
//   x += RMSNorm_post_attn(o); x += RMSNorm_post_ff(down(gelu_tanh(gate(m)) ⊙ up(m))),
//   m = RMSNorm_pre_ff(x).
// Then RMSNorm_final and logits = h · Eᵀ (tied) or · lm_headᵀ; no soft-capping.
// Masks (spec §7.1, as transformers 5.17 composes them; kernels/kv_layout.h AttendAllowed): full
// layers allow j ≤ i or (i, j) in the same image block; sliding layers additionally require
// j > i − sliding_window.
// Keys and values live in the runner's paged pools (kernels/kv_layout.h): Forward runs one chunk of
// one sequence — its new positions' K/V are written into the pages, its queries read every key so
// far through the block tables — so a sequence may be prefilled in chunks and extended by any
// number of tokens, with bitwise the same results as in one piece.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "model/weights/checkpoint.h"
#include "model/weights/config.h"

namespace vlmserve {

class Gemma3Decoder {
 public:
  static StatusOr<Gemma3Decoder> Load(const Checkpoint& ck, const Gemma3Config& config);

  // Per layer, that layer's K and V pools: [pages, kv::kPageTokens, kv_heads, head_dim] fp32, in
  // the pool of the layer's kind (full or sliding).
  struct LayerPools {
    std::span<float*const> k, v;
  };
  // One chunk of one sequence: positions start .. start + n − 1.
  struct Chunk {
    int64_t start = 0;
    std::span<const uint8_t> token_types;                // n entries, 1 on image soft tokens
    std::span<const int32_t> full_table, sliding_table;  // block tables (kernels/kv_layout.h)
  };

  // Text embeddings × float32(√D) into `out` [ids.size(), D], skipping positions with is_soft = 1
  // (image soft tokens, written by the caller). Ids must be in [0, vocab_size).
  void Embed(std::span<const int32_t> ids, std::span<const uint8_t> is_soft, float* out) const;

  // Runs the chunk from its input embeddings [n, D], writing its K/V into the pools, and returns
  // logits: [1, vocab] for the last position, or [n, vocab] when all_logits.
  std::vector<float> Forward(const LayerPools& pools, const Chunk& chunk,
                             std::span<const float> embeddings, bool all_logits) const;
  // Several chunks of different sequences in one pass: their tokens go through every linear
  // layer together (one GEMM per weight for the step; each row's result is bitwise what it is
  // alone), attention per chunk. `embeddings` holds the chunks' [n_i, D] one after the other;
  // returns each chunk's logits as Forward does.
  std::vector<std::vector<float>> ForwardBatch(const LayerPools& pools,
                                               std::span<const Chunk> chunks,
                                               std::span<const float> embeddings,
                                               std::span<const bool> all_logits) const;

  int64_t hidden_size() const { return cfg_.hidden_size; }
  int64_t vocab_size() const { return cfg_.vocab_size; }
  float embed_scale() const { return embed_scale_; }
  const Gemma3TextConfig& config() const { return cfg_; }

 private:
  struct Layer {
    LayerType type;
    std::vector<float> input_norm, q, k, v, o, q_bias, k_bias, v_bias, o_bias;
    std::vector<float> q_norm, k_norm, post_attn_norm, pre_ff_norm, gate, up, down, post_ff_norm;
  };
  Gemma3TextConfig cfg_;
  float embed_scale_ = 1.0f;
  std::vector<float> embed_, final_norm_, lm_head_;  // lm_head_ empty when tied
  std::vector<float> inv_freq_full_, inv_freq_sliding_;
  std::vector<Layer> layers_;
};

}  // namespace vlmserve
