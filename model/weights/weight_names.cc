// Expected tensors and name mapping (see weight_names.h). Shapes follow spec §9.2 and the module
// definitions in transformers (checked against files saved by transformers in the tests).
#include "model/weights/weight_names.h"

#include <array>
#include <utility>

#include "model/weights/tensor_names.h"

namespace vlmserve {

const char* ComponentName(Component c) {
  switch (c) {
    case Component::kVisionTower:
      return "vision_tower";
    case Component::kProjector:
      return "projector";
    case Component::kLanguageModel:
      return "language_model";
    case Component::kLmHead:
      return "lm_head";
  }
  return "?";
}

std::vector<ExpectedTensor> ExpectedTensors(const Gemma3Config& c) {
  namespace tn = tensor_names;
  std::vector<ExpectedTensor> out;
  auto add = [&out](std::string name, std::vector<int64_t> shape, Component comp) {
    out.push_back({std::move(name), std::move(shape), comp});
  };
  if (c.has_vision) {
    const auto& v = c.vision;
    const int64_t d = v.hidden_size, i = v.intermediate_size;
    const auto V = Component::kVisionTower;
    add(tn::kPatchEmbedWeight, {d, v.num_channels, v.patch_size, v.patch_size}, V);
    add(tn::kPatchEmbedBias, {d}, V);
    add(tn::kPositionEmbedding, {v.num_patches(), d}, V);
    for (int64_t l = 0; l < v.num_hidden_layers; ++l) {
      const tn::VisionLayer n = tn::VisionLayerTensors(l);
      add(n.ln1_weight, {d}, V);
      add(n.ln1_bias, {d}, V);
      add(n.q_weight, {d, d}, V);
      add(n.q_bias, {d}, V);
      add(n.k_weight, {d, d}, V);
      add(n.k_bias, {d}, V);
      add(n.v_weight, {d, d}, V);
      add(n.v_bias, {d}, V);
      add(n.out_weight, {d, d}, V);
      add(n.out_bias, {d}, V);
      add(n.ln2_weight, {d}, V);
      add(n.ln2_bias, {d}, V);
      add(n.fc1_weight, {i, d}, V);
      add(n.fc1_bias, {i}, V);
      add(n.fc2_weight, {d, i}, V);
      add(n.fc2_bias, {d}, V);
    }
    add(tn::kPostLayerNormWeight, {d}, V);
    add(tn::kPostLayerNormBias, {d}, V);
    if (v.use_head) {  // SiglipMultiheadAttentionPoolingHead (unused by Gemma 3, but stored)
      const std::string h = tn::kVisionHeadPrefix;
      add(h + "probe", {1, 1, d}, V);
      add(h + "attention.in_proj_weight", {3 * d, d}, V);
      add(h + "attention.in_proj_bias", {3 * d}, V);
      add(h + "attention.out_proj.weight", {d, d}, V);
      add(h + "attention.out_proj.bias", {d}, V);
      add(h + "layernorm.weight", {d}, V);
      add(h + "layernorm.bias", {d}, V);
      add(h + "mlp.fc1.weight", {i, d}, V);
      add(h + "mlp.fc1.bias", {i}, V);
      add(h + "mlp.fc2.weight", {d, i}, V);
      add(h + "mlp.fc2.bias", {d}, V);
    }
    // spec §5: mm_input_projection_weight is [vision width, LM width], used as x · W.
    add(tn::kProjectorWeight, {d, c.text.hidden_size}, Component::kProjector);
    add(tn::kProjectorNorm, {d}, Component::kProjector);
  }
  const auto& t = c.text;
  const int64_t D = t.hidden_size, I = t.intermediate_size, hd = t.head_dim;
  const int64_t q = t.num_attention_heads * hd, kv = t.num_key_value_heads * hd;
  const auto L = Component::kLanguageModel;
  add(tn::kEmbedTokens, {t.vocab_size, D}, L);
  for (int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const tn::DecoderLayer n = tn::DecoderLayerTensors(l);
    add(n.input_norm, {D}, L);
    add(n.q_proj, {q, D}, L);
    add(n.k_proj, {kv, D}, L);
    add(n.v_proj, {kv, D}, L);
    add(n.o_proj, {D, q}, L);
    if (t.attention_bias) {
      add(n.q_bias, {q}, L);
      add(n.k_bias, {kv}, L);
      add(n.v_bias, {kv}, L);
      add(n.o_bias, {D}, L);
    }
    add(n.q_norm, {hd}, L);
    add(n.k_norm, {hd}, L);
    add(n.post_attn_norm, {D}, L);
    add(n.pre_ff_norm, {D}, L);
    add(n.gate_proj, {I, D}, L);
    add(n.up_proj, {I, D}, L);
    add(n.down_proj, {D, I}, L);
    add(n.post_ff_norm, {D}, L);
  }
  add(tn::kFinalNorm, {D}, L);
  if (!t.tie_word_embeddings) add(tn::kLmHead, {t.vocab_size, D}, Component::kLmHead);
  return out;
}

std::string FileNameHint(const std::string& internal, bool text_only) {
  const auto dot = internal.find('.');
  const std::string head = internal.substr(0, dot + 1), rest = internal.substr(dot + 1);
  if (text_only) return (head == "lm." ? "model." : head) + rest;
  if (head == "lm.") return "language_model.model." + rest + " or model.language_model." + rest;
  if (head == "vision.") {
    return "vision_tower.vision_model." + rest + " or model.vision_tower.vision_model." + rest +
           " (or without vision_model.)";
  }
  if (head == "projector.") {
    return "multi_modal_projector." + rest + " or model.multi_modal_projector." + rest;
  }
  return internal;
}

std::optional<std::string> InternalWeightName(std::string_view name, bool text_only,
                                              std::string_view* matched_prefix) {
  // Longest prefixes first where one is a prefix of another (model.vision_tower.vision_model.).
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kMultimodal = {{
      {"language_model.model.", "lm."},
      {"model.language_model.", "lm."},
      {"language_model.lm_head.", "lm_head."},
      {"lm_head.", "lm_head."},
      {"vision_tower.vision_model.", "vision."},
      {"model.vision_tower.vision_model.", "vision."},
      {"model.vision_tower.", "vision."},
      {"vision_tower.", "vision."},
      {"multi_modal_projector.", "projector."},
      {"model.multi_modal_projector.", "projector."},
  }};
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 2> kTextOnly = {{
      {"model.", "lm."},
      {"lm_head.", "lm_head."},
  }};
  auto map = [name, matched_prefix](const auto& table) -> std::optional<std::string> {
    for (const auto& [from, to] : table) {
      if (name.substr(0, from.size()) == from) {
        if (matched_prefix) *matched_prefix = from;
        return std::string(to) + std::string(name.substr(from.size()));
      }
    }
    return std::nullopt;
  };
  return text_only ? map(kTextOnly) : map(kMultimodal);
}

}  // namespace vlmserve
