// Gemma3Decoder: the Gemma 3 text decoder (spec §6) in fp32 on the CPU — the oracle for the CUDA
// runner — with a per-sequence KV cache.
//
// Per layer (sandwich norms, spec §6.2):
//   a = RMSNorm_in(x); q,k,v = a·Wᵀ; q,k = RMSNorm_{q,k} per head; RoPE(q, k) by layer type;
//   cache k, v; o = attention(q, K, V; mask, scale = query_pre_attn_scalar^-0.5, GQA) · Woᵀ;
//   x += RMSNorm_post_attn(o); x += RMSNorm_post_ff(down(gelu_tanh(gate(m)) ⊙ up(m))),
//   m = RMSNorm_pre_ff(x).
// Then RMSNorm_final and logits = h · Eᵀ (tied) or · lm_headᵀ; no soft-capping.
// Masks (spec §7.1, as transformers 5.17 composes them): full layers allow j ≤ i or (i, j) in the
// same image block; sliding layers additionally require j > i − sliding_window.
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
  // One sequence's state: its cached keys/values and what each position was.
  struct Sequence {
    int64_t length = 0;
    std::vector<int32_t> image_block;      // per position: -1 for text, else the image-run index
    int32_t image_blocks = 0;              // runs seen so far
    std::vector<std::vector<float>> k, v;  // per layer: [length, kv_heads, head_dim], post-RoPE
  };

  static StatusOr<Gemma3Decoder> Load(const Checkpoint& ck, const Gemma3Config& config);

  Sequence NewSequence() const;

  // Text embeddings × float32(√D) into `out` [ids.size(), D], skipping positions with is_soft = 1
  // (image soft tokens, written by the caller). Ids must be in [0, vocab_size).
  void Embed(std::span<const int32_t> ids, std::span<const uint8_t> is_soft, float* out) const;

  // Appends n = token_type.size() positions to `seq` from their input embeddings [n, D] and
  // returns logits: [1, vocab] for the last position, or [n, vocab] when all_logits.
  std::vector<float> Forward(Sequence& seq, std::span<const float> embeddings,
                             std::span<const uint8_t> token_type, bool all_logits) const;

  int64_t hidden_size() const { return cfg_.hidden_size; }
  int64_t vocab_size() const { return cfg_.vocab_size; }
  float embed_scale() const { return embed_scale_; }

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
