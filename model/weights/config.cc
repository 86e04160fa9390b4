// The config types' derived values (see config.h). Parsing config.json is config_json.cc.
#include "model/weights/config.h"

#include <cmath>

namespace vlmserve {

const char* LayerTypeName(LayerType t) {
  return t == LayerType::kFullAttention ? "full_attention" : "sliding_attention";
}
const char* RopeTypeName(RopeType t) { return t == RopeType::kLinear ? "linear" : "default"; }

int64_t Gemma3TextConfig::NumLayersOfType(LayerType t) const {
  int64_t n = 0;
  for (LayerType l : layer_types) n += (l == t);
  return n;
}

double Gemma3TextConfig::AttentionScale() const { return 1.0 / std::sqrt(query_pre_attn_scalar); }

int64_t Gemma3Config::tokens_per_side() const {
  return static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(mm_tokens_per_image))));
}
int64_t Gemma3Config::pool_kernel() const { return vision.patches_per_side() / tokens_per_side(); }

}  // namespace vlmserve
