// Parameter and memory arithmetic (see model_stats.h). Every product goes through CheckedProduct:
// the config may come from an attacker and its fields are only individually bounded.
#include "model/weights/model_stats.h"

#include <algorithm>

#include "common/checked_math.h"

namespace vlmserve {
namespace {

// Sums a list of products; nullopt if anything overflows.
class Tally {
 public:
  Tally& Add(std::initializer_list<uint64_t> factors) {
    auto p = CheckedProduct(factors);
    auto s = p ? CheckedAdd(sum_, *p) : std::nullopt;
    if (!s)
      overflow_ = true;
    else
      sum_ = *s;
    return *this;
  }
  Tally& AddTally(const Tally& other, uint64_t times = 1) {
    if (other.overflow_) overflow_ = true;
    return Add({other.sum_, times});
  }
  bool overflow() const { return overflow_; }
  uint64_t sum() const { return sum_; }

 private:
  uint64_t sum_ = 0;
  bool overflow_ = false;
};

Status Overflow(const char* what) {
  return InvalidArgumentError(std::string("the ") + what +
                              " parameter count overflows 64 bits; the config's sizes are "
                              "inconsistent");
}

}  // namespace

StatusOr<ParameterCounts> CountParameters(const Gemma3Config& c) {
  ParameterCounts out;
  Tally linear;  // across components

  if (c.has_vision) {
    const SiglipVisionConfig& v = c.vision;
    const uint64_t d = v.hidden_size, i = v.intermediate_size;
    Tally layer, layer_linear;
    layer_linear.Add({4, d, d}).Add({2, d, i});  // q, k, v, out_proj; fc1, fc2
    layer.AddTally(layer_linear)
        .Add({4, d})
        .Add({i})
        .Add({d})         // their biases
        .Add({2, 2, d});  // layer_norm1/2 weight + bias
    const uint64_t conv = static_cast<uint64_t>(v.num_channels) * v.patch_size * v.patch_size;
    Tally vt_linear;  // the linear-layer matrices only (for the fp8 estimate)
    vt_linear.Add({d, conv}).AddTally(layer_linear, v.num_hidden_layers);
    Tally vt;
    vt.Add({d, conv})
        .Add({d})                                          // patch conv weight + bias
        .Add({static_cast<uint64_t>(v.num_patches()), d})  // position table
        .AddTally(layer, v.num_hidden_layers)              // encoder layers
        .Add({2, d});                                      // post_layernorm
    if (v.use_head) {
      // SiglipMultiheadAttentionPoolingHead: probe, nn.MultiheadAttention (in_proj 3d×d + 3d,
      // out_proj d×d + d), LayerNorm, MLP (fc1, fc2 with biases).
      Tally head_linear;
      head_linear.Add({3, d, d}).Add({d, d}).Add({2, d, i});
      vt.AddTally(head_linear).Add({d}).Add({3, d}).Add({d}).Add({2, d}).Add({i}).Add({d});
      vt_linear.AddTally(head_linear);
    }
    if (vt.overflow() || vt_linear.overflow()) return Overflow("vision tower");
    out.vision_tower = vt.sum();
    linear.AddTally(vt_linear);

    Tally proj;
    proj.Add({d, static_cast<uint64_t>(c.text.hidden_size)}).Add({d});
    if (proj.overflow()) return Overflow("projector");
    out.projector = proj.sum();
    linear.Add({d, static_cast<uint64_t>(c.text.hidden_size)});
  }

  const Gemma3TextConfig& t = c.text;
  const uint64_t D = t.hidden_size, I = t.intermediate_size, hd = t.head_dim;
  const uint64_t H = t.num_attention_heads, KV = t.num_key_value_heads;
  Tally layer_linear;
  layer_linear.Add({D, H, hd})
      .Add({2, D, KV, hd})
      .Add({H, hd, D})  // q, k, v, o
      .Add({3, D, I});  // gate, up, down
  Tally layer;
  layer.AddTally(layer_linear)
      .Add({2, hd})  // q_norm, k_norm
      .Add({4, D});  // input, post_attention, pre/post_feedforward norms
  if (t.attention_bias) layer.Add({H, hd}).Add({2, KV, hd}).Add({D});
  Tally embedding;
  embedding.Add({static_cast<uint64_t>(t.vocab_size), D});
  Tally lm;
  lm.AddTally(embedding).AddTally(layer, t.num_hidden_layers).Add({D});
  if (lm.overflow() || embedding.overflow()) return Overflow("language model");
  out.language_model = lm.sum();
  out.embedding = embedding.sum();
  out.lm_head = t.tie_word_embeddings ? 0 : out.embedding;
  linear.AddTally(layer_linear, t.num_hidden_layers).Add({out.lm_head});

  Tally total;
  total.Add({out.vision_tower}).Add({out.projector}).Add({out.language_model}).Add({out.lm_head});
  if (total.overflow() || linear.overflow()) return Overflow("total");
  out.total = total.sum();
  out.linear_weights = linear.sum();
  return out;
}

StatusOr<MemoryEstimate> EstimateMemory(const Gemma3Config& c) {
  ASSIGN_OR_RETURN(ParameterCounts p, CountParameters(c));
  MemoryEstimate m;
  m.weights_bf16_bytes = 2 * p.total;  // total ≤ 2^40 after ParseGemma3Config: no overflow
  m.weights_fp8_bytes = p.linear_weights + 2 * (p.total - p.linear_weights);
  auto per_layer = CheckedProduct({2, static_cast<uint64_t>(c.text.num_key_value_heads),
                                   static_cast<uint64_t>(c.text.head_dim), 2});
  auto all = per_layer ? CheckedMul(*per_layer, c.text.num_hidden_layers) : std::nullopt;
  if (!all) return Overflow("KV cache");
  m.kv_bytes_per_token_per_layer = *per_layer;
  m.kv_bytes_per_token = *all;
  return m;
}

StatusOr<uint64_t> KvCacheBytes(const Gemma3Config& c, uint64_t context) {
  ASSIGN_OR_RETURN(MemoryEstimate m, EstimateMemory(c));
  const uint64_t full = c.text.NumLayersOfType(LayerType::kFullAttention);
  const uint64_t sliding = c.text.NumLayersOfType(LayerType::kSlidingAttention);
  const uint64_t window = std::min<uint64_t>(context, c.text.sliding_window);
  Tally bytes;
  bytes.Add({full, context, m.kv_bytes_per_token_per_layer})
      .Add({sliding, window, m.kv_bytes_per_token_per_layer});
  if (bytes.overflow()) return Overflow("KV cache");
  return bytes.sum();
}

}  // namespace vlmserve
