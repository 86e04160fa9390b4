// Expected tensors and name mapping (see weight_names.h). Shapes follow spec §9.2 and the module
// definitions in transformers (checked against files saved by transformers in the tests).
#include "model/weight_names.h"

#include <array>
#include <utility>

namespace vlmserve {

const char* ComponentName(Component c) {
  switch (c) {
    case Component::kVisionTower: return "vision_tower";
    case Component::kProjector: return "projector";
    case Component::kLanguageModel: return "language_model";
    case Component::kLmHead: return "lm_head";
  }
  return "?";
}

std::vector<ExpectedTensor> ExpectedTensors(const Gemma3Config& c) {
  std::vector<ExpectedTensor> out;
  auto add = [&out](std::string name, std::vector<int64_t> shape, Component comp) {
    out.push_back({std::move(name), std::move(shape), comp});
  };
  if (c.has_vision) {
    const auto& v = c.vision;
    const int64_t d = v.hidden_size, i = v.intermediate_size;
    const auto V = Component::kVisionTower;
    add("vision.embeddings.patch_embedding.weight", {d, v.num_channels, v.patch_size, v.patch_size}, V);
    add("vision.embeddings.patch_embedding.bias", {d}, V);
    add("vision.embeddings.position_embedding.weight", {v.num_patches(), d}, V);
    for (int64_t l = 0; l < v.num_hidden_layers; ++l) {
      const std::string p = "vision.encoder.layers." + std::to_string(l) + ".";
      add(p + "layer_norm1.weight", {d}, V);
      add(p + "layer_norm1.bias", {d}, V);
      for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
        add(p + "self_attn." + proj + ".weight", {d, d}, V);
        add(p + "self_attn." + proj + ".bias", {d}, V);
      }
      add(p + "layer_norm2.weight", {d}, V);
      add(p + "layer_norm2.bias", {d}, V);
      add(p + "mlp.fc1.weight", {i, d}, V);
      add(p + "mlp.fc1.bias", {i}, V);
      add(p + "mlp.fc2.weight", {d, i}, V);
      add(p + "mlp.fc2.bias", {d}, V);
    }
    add("vision.post_layernorm.weight", {d}, V);
    add("vision.post_layernorm.bias", {d}, V);
    if (v.use_head) {  // SiglipMultiheadAttentionPoolingHead (unused by Gemma 3, but stored)
      add("vision.head.probe", {1, 1, d}, V);
      add("vision.head.attention.in_proj_weight", {3 * d, d}, V);
      add("vision.head.attention.in_proj_bias", {3 * d}, V);
      add("vision.head.attention.out_proj.weight", {d, d}, V);
      add("vision.head.attention.out_proj.bias", {d}, V);
      add("vision.head.layernorm.weight", {d}, V);
      add("vision.head.layernorm.bias", {d}, V);
      add("vision.head.mlp.fc1.weight", {i, d}, V);
      add("vision.head.mlp.fc1.bias", {i}, V);
      add("vision.head.mlp.fc2.weight", {d, i}, V);
      add("vision.head.mlp.fc2.bias", {d}, V);
    }
    // spec §5: mm_input_projection_weight is [vision width, LM width], used as x · W.
    add("projector.mm_input_projection_weight", {d, c.text.hidden_size}, Component::kProjector);
    add("projector.mm_soft_emb_norm.weight", {d}, Component::kProjector);
  }
  const auto& t = c.text;
  const int64_t D = t.hidden_size, I = t.intermediate_size, hd = t.head_dim;
  const int64_t q = t.num_attention_heads * hd, kv = t.num_key_value_heads * hd;
  const auto L = Component::kLanguageModel;
  add("lm.embed_tokens.weight", {t.vocab_size, D}, L);
  for (int64_t l = 0; l < t.num_hidden_layers; ++l) {
    const std::string p = "lm.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {D}, L);
    add(p + "self_attn.q_proj.weight", {q, D}, L);
    add(p + "self_attn.k_proj.weight", {kv, D}, L);
    add(p + "self_attn.v_proj.weight", {kv, D}, L);
    add(p + "self_attn.o_proj.weight", {D, q}, L);
    if (t.attention_bias) {
      add(p + "self_attn.q_proj.bias", {q}, L);
      add(p + "self_attn.k_proj.bias", {kv}, L);
      add(p + "self_attn.v_proj.bias", {kv}, L);
      add(p + "self_attn.o_proj.bias", {D}, L);
    }
    add(p + "self_attn.q_norm.weight", {hd}, L);
    add(p + "self_attn.k_norm.weight", {hd}, L);
    add(p + "post_attention_layernorm.weight", {D}, L);
    add(p + "pre_feedforward_layernorm.weight", {D}, L);
    add(p + "mlp.gate_proj.weight", {I, D}, L);
    add(p + "mlp.up_proj.weight", {I, D}, L);
    add(p + "mlp.down_proj.weight", {D, I}, L);
    add(p + "post_feedforward_layernorm.weight", {D}, L);
  }
  add("lm.norm.weight", {D}, L);
  if (!t.tie_word_embeddings) add("lm_head.weight", {t.vocab_size, D}, Component::kLmHead);
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
