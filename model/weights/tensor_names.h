// The internal names of a Gemma 3 checkpoint's tensors (weight_names.h maps file names onto them):
// the one table used by the checkpoint loader (ExpectedTensors, with the shapes) and by every
// runner that reads weights (the CPU reference now, the CUDA runner next). A runner asks for
// `DecoderLayerTensors(l).q_proj` instead of spelling "lm.layers.<l>.self_attn.q_proj.weight".
#pragma once

#include <cstdint>
#include <string>

namespace vlmserve::tensor_names {

// Language model (spec §6, §9.2).
inline constexpr char kEmbedTokens[] =
    "lm.embed_tokens.weight";                           // [vocab, D]; the LM head when tied
inline constexpr char kFinalNorm[] = "lm.norm.weight";  // [D]
inline constexpr char kLmHead[] = "lm_head.weight";     // [vocab, D], untied models only

struct DecoderLayer {
  std::string input_norm, q_proj, k_proj, v_proj, o_proj;  // projections: [out, in] (nn.Linear)
  std::string q_bias, k_bias, v_bias, o_bias;              // only with attention_bias
  std::string q_norm, k_norm;                              // [head_dim]
  std::string post_attn_norm, pre_ff_norm, post_ff_norm;   // [D]
  std::string gate_proj, up_proj, down_proj;               // [I, D], [I, D], [D, I]
};
DecoderLayer DecoderLayerTensors(int64_t layer);

// SigLIP vision tower (spec §4).
inline constexpr char kPatchEmbedWeight[] =
    "vision.embeddings.patch_embedding.weight";                                      // [d, c, p, p]
inline constexpr char kPatchEmbedBias[] = "vision.embeddings.patch_embedding.bias";  // [d]
inline constexpr char kPositionEmbedding[] =
    "vision.embeddings.position_embedding.weight";                              // [P, d]
inline constexpr char kPostLayerNormWeight[] = "vision.post_layernorm.weight";  // [d]
inline constexpr char kPostLayerNormBias[] = "vision.post_layernorm.bias";      // [d]

struct VisionLayer {
  std::string ln1_weight, ln1_bias;
  std::string q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, out_weight, out_bias;  // [d, d]
  std::string ln2_weight, ln2_bias;
  std::string fc1_weight, fc1_bias, fc2_weight, fc2_bias;  // [i, d], [d, i]
};
VisionLayer VisionLayerTensors(int64_t layer);

// The attention-pooling head transformers stores with SigLIP (Gemma 3 never runs it).
inline constexpr char kVisionHeadPrefix[] = "vision.head.";

// Projector (spec §5).
inline constexpr char kProjectorWeight[] = "projector.mm_input_projection_weight";  // [d, D], x · W
inline constexpr char kProjectorNorm[] = "projector.mm_soft_emb_norm.weight";       // [d]

}  // namespace vlmserve::tensor_names
