// Gemma3Config: what a Gemma 3 checkpoint's config.json says, fully resolved (spec §1).
//
// Accepted forms (spec §1.5): the sparse published config (absent fields take the transformers
// class defaults of spec §1.4), `sliding_window_pattern` or an explicit `layer_types` list, RoPE as
// `rope_theta` + `rope_scaling` (key `type` or `rope_type`) + `rope_local_base_freq`, or the v5
// `rope_parameters` dict keyed by layer type; multimodal `gemma3` and text-only `gemma3_text`
// configs. config.json is untrusted input: sizes are bounded (kConfigLimits), products are
// overflow-checked, and every error names the field ("text_config.num_key_value_heads: ...").
// Parsing is in config_json.h (it needs the parameter arithmetic of model_stats.h, which needs
// these types).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vlmserve {

enum class LayerType { kSlidingAttention, kFullAttention };
enum class RopeType { kDefault, kLinear };

const char* LayerTypeName(LayerType t);  // "sliding_attention" / "full_attention"
const char* RopeTypeName(RopeType t);    // "default" / "linear"

// RoPE frequencies for one layer type (spec §6.4): inv_freq[i] = 1 / theta^(2i/head_dim) / factor.
struct RopeParams {
  RopeType type = RopeType::kDefault;
  double theta = 10000.0;
  double factor = 1.0;  // linear scaling divides inv_freq by this; 1 for kDefault
};

// The decoder (`text_config`, or the whole file for text-only checkpoints).
struct Gemma3TextConfig {
  int64_t vocab_size = 262208;
  int64_t hidden_size = 2304;
  int64_t intermediate_size = 9216;
  int64_t num_hidden_layers = 26;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 256;
  double query_pre_attn_scalar = 256;  // attention scale = query_pre_attn_scalar^-0.5 (spec §6.4)
  double rms_norm_eps = 1e-6;
  int64_t sliding_window = 4096;  // a local layer's query sees keys with i − j < sliding_window
  int64_t max_position_embeddings = 131072;
  std::vector<LayerType> layer_types;  // one per layer, always num_hidden_layers long once parsed
  RopeParams rope_full{RopeType::kDefault, 1e6, 1.0};     // full_attention (global) layers
  RopeParams rope_sliding{RopeType::kDefault, 1e4, 1.0};  // sliding_attention (local) layers
  bool attention_bias = false;                            // biases on q/k/v/o
  bool tie_word_embeddings = true;                        // LM head = embed_tokens
  int64_t pad_token_id = 0;
  int64_t bos_token_id = 2;
  std::vector<int64_t> eos_token_ids = {1};
  std::string hidden_activation = "gelu_pytorch_tanh";

  int64_t NumLayersOfType(LayerType t) const;
  double AttentionScale() const;  // query_pre_attn_scalar^-0.5
};

// The SigLIP vision tower (`vision_config`).
struct SiglipVisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 16;
  double layer_norm_eps = 1e-6;
  std::string hidden_act = "gelu_pytorch_tanh";
  // transformers builds the attention-pooling head unless the config says vision_use_head=false
  // (Gemma 3 does). Gemma 3 never uses the head's output; it only changes the parameter count.
  bool use_head = true;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t patches_per_side() const { return image_size / patch_size; }
  int64_t num_patches() const { return patches_per_side() * patches_per_side(); }
};

struct Gemma3Config {
  std::string model_type;    // "gemma3" (multimodal) or "gemma3_text" (text only)
  std::string architecture;  // first entry of "architectures", or "" when absent
  std::string dtype;         // "torch_dtype"/"dtype" as written ("bfloat16"), or ""
  bool has_vision = false;
  Gemma3TextConfig text;
  SiglipVisionConfig vision;  // meaningful only when has_vision
  int64_t mm_tokens_per_image = 256;
  int64_t boi_token_id = 255999;
  int64_t eoi_token_id = 256000;
  int64_t image_token_id = 262144;
  // Stop ids: the top-level eos_token_id when present (4B: [1, 106]), else text_config's.
  std::vector<int64_t> eos_token_ids;

  // Vision → LM geometry (spec §5): the average-pooling kernel over the patch grid.
  int64_t tokens_per_side() const;  // √mm_tokens_per_image
  int64_t pool_kernel() const;      // patches_per_side / tokens_per_side
};

// Bounds on what a config may declare; anything outside is rejected with a message naming the
// field and the bound. Generous: the largest Gemma 3 (27B) uses a small fraction of each.
struct ConfigLimits {
  uint64_t max_file_bytes = 1 << 20;  // config.json files are a few KB
  int max_json_depth = 16;            // deepest legitimate nesting is 4
  int64_t max_vocab_size = int64_t{1} << 24;
  int64_t max_hidden_size = 65536;
  int64_t max_intermediate_size = 262144;
  int64_t max_layers = 1024;
  int64_t max_heads = 1024;
  int64_t max_head_dim = 1024;
  int64_t max_positions = int64_t{1} << 24;  // max_position_embeddings and sliding_window
  int64_t max_image_size = 8192;
  int64_t max_patches = int64_t{1} << 20;  // per image, (image_size / patch_size)²
  int64_t max_mm_tokens_per_image = 65536;
  uint64_t max_parameters = uint64_t{1} << 40;  // ≈1.1 T: far beyond any Gemma 3
};
inline constexpr ConfigLimits kConfigLimits{};

}  // namespace vlmserve
