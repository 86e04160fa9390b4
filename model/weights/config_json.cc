// config.json → Gemma3Config (see config_json.h). Resolution follows transformers' Gemma3Config /
// Gemma3TextConfig / SiglipVisionConfig (spec §1.4, §1.5) with one deliberate difference, noted at
// ResolveRope: a legacy `rope_scaling: {"type": "linear"}` is honoured as linear scaling.
#include "model/weights/config_json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>

#include "common/checked_math.h"
#include "common/json_util.h"
#include "model/weights/model_stats.h"

namespace vlmserve {

using nlohmann::json;

namespace {

// Typed, path-aware access to one JSON object. Absent keys keep the caller's default; a key that is
// present with the wrong type or out of range is an error naming "<path>.<key>".
class Fields {
 public:
  Fields(const json& obj, std::string path) : obj_(obj), path_(std::move(path)) {}

  const json* Find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }
  bool Has(const char* key) const { return Find(key) != nullptr; }
  bool HasNonNull(const char* key) const {
    const json* v = Find(key);
    return v && !v->is_null();
  }
  std::string Name(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  Status Error(const char* key, const std::string& what) const {
    return InvalidArgumentError(Name(key) + ": " + what);
  }

  // Integer in [lo, hi]. Floats, even integral ones, are rejected (transformers' strict configs
  // reject them too).
  Status Int(const char* key, int64_t* out, int64_t lo, int64_t hi) const {
    const json* v = Find(key);
    if (!v) return Status::Ok();
    return IntValue(*v, key, out, lo, hi);
  }
  Status IntValue(const json& v, const char* key, int64_t* out, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) return Error(key, "must be an integer, got " + Describe(v));
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return Error(key, OutOfRange(v.dump(), lo, hi));
    }
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) return Error(key, OutOfRange(std::to_string(x), lo, hi));
    *out = x;
    return Status::Ok();
  }

  // Finite number in (lo, hi] when lo_exclusive, else [lo, hi]. Integers are accepted.
  Status Float(const char* key, double* out, double lo, double hi, bool lo_exclusive) const {
    const json* v = Find(key);
    if (!v) return Status::Ok();
    if (!v->is_number()) return Error(key, "must be a number, got " + Describe(*v));
    const double x = v->get<double>();
    const bool low_ok = lo_exclusive ? x > lo : x >= lo;
    if (!std::isfinite(x) || !low_ok || x > hi) {
      return Error(key, "value " + v->dump() + " is outside " + (lo_exclusive ? "(" : "[") +
                            Num(lo) + ", " + Num(hi) + "]");
    }
    *out = x;
    return Status::Ok();
  }

  Status Bool(const char* key, bool* out) const {
    const json* v = Find(key);
    if (!v) return Status::Ok();
    if (!v->is_boolean()) return Error(key, "must be true or false, got " + Describe(*v));
    *out = v->get<bool>();
    return Status::Ok();
  }

  Status String(const char* key, std::string* out) const {
    const json* v = Find(key);
    if (!v) return Status::Ok();
    if (!v->is_string()) return Error(key, "must be a string, got " + Describe(*v));
    *out = v->get<std::string>();
    return Status::Ok();
  }

  // An int or a list of ints (eos_token_id). null leaves *out unchanged.
  Status IntOrIntList(const char* key, std::vector<int64_t>* out, int64_t lo, int64_t hi) const {
    const json* v = Find(key);
    if (!v || v->is_null()) return Status::Ok();
    std::vector<int64_t> ids;
    if (v->is_array()) {
      if (v->empty() || v->size() > 64) return Error(key, "must list 1 to 64 token ids");
      for (const json& e : *v) {
        int64_t id = 0;
        RETURN_IF_ERROR(IntValue(e, key, &id, lo, hi));
        ids.push_back(id);
      }
    } else {
      int64_t id = 0;
      RETURN_IF_ERROR(IntValue(*v, key, &id, lo, hi));
      ids.push_back(id);
    }
    *out = std::move(ids);
    return Status::Ok();
  }

  static std::string Describe(const json& v) {
    if (v.is_null()) return "null";
    std::string s = v.dump();
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return std::string(v.type_name()) + " " + s;
  }
  static std::string Num(double x) {
    json j = x;
    return j.dump();
  }
  static std::string OutOfRange(const std::string& got, int64_t lo, int64_t hi) {
    return "value " + got + " is outside the supported range [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "]";
  }

 private:
  const json& obj_;
  std::string path_;
};

Status RequireObject(const json& v, const std::string& path) {
  if (!v.is_object()) {
    return InvalidArgumentError(path + ": must be a JSON object, got " + Fields::Describe(v));
  }
  return Status::Ok();
}

// One RoPE dict ({"rope_type"|"type": ..., "rope_theta": ..., "factor": ...}) applied on top of
// `*p`. transformers v5 reads only "rope_type" once a default is in place, so a legacy
// {"type": "linear", "factor": 8} silently becomes unscaled RoPE there (5.17 warns "Unrecognized
// keys ... {'factor'}"); transformers 4.5x, which wrote such files, applied the linear scaling.
// We follow the file's evident meaning (4.5x): "type" counts when "rope_type" is absent.
Status ResolveRope(const json& dict, const std::string& path, RopeParams* p) {
  RETURN_IF_ERROR(RequireObject(dict, path));
  Fields f(dict, path);
  std::string type = RopeTypeName(p->type);
  if (f.HasNonNull("rope_type")) {
    RETURN_IF_ERROR(f.String("rope_type", &type));
  } else if (f.HasNonNull("type")) {
    RETURN_IF_ERROR(f.String("type", &type));
  }
  if (type == "default") {
    p->type = RopeType::kDefault;
    p->factor = 1.0;
  } else if (type == "linear") {
    p->type = RopeType::kLinear;
    if (!f.HasNonNull("factor")) return f.Error("factor", "is required for linear RoPE scaling");
    RETURN_IF_ERROR(f.Float("factor", &p->factor, 1.0, 1e6, /*lo_exclusive=*/false));
  } else {
    return UnimplementedError(f.Name("rope_type") + ": RoPE type \"" + type +
                              "\" is not supported (Gemma 3 uses \"default\" and \"linear\")");
  }
  return f.Float("rope_theta", &p->theta, 0.0, 1e12, /*lo_exclusive=*/true);
}

Status ParseLayerTypes(const Fields& f, const json& v, int64_t num_layers,
                       std::vector<LayerType>* out) {
  if (!v.is_array()) return f.Error("layer_types", "must be a list, got " + Fields::Describe(v));
  if (static_cast<int64_t>(v.size()) != num_layers) {
    return f.Error("layer_types", "has " + std::to_string(v.size()) +
                                      " entries but num_hidden_layers is " +
                                      std::to_string(num_layers));
  }
  out->clear();
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string s = v[i].is_string() ? v[i].get<std::string>() : "";
    if (s == "sliding_attention") {
      out->push_back(LayerType::kSlidingAttention);
    } else if (s == "full_attention") {
      out->push_back(LayerType::kFullAttention);
    } else {
      return f.Error("layer_types", "entry " + std::to_string(i) + " is " + Fields::Describe(v[i]) +
                                        "; expected \"sliding_attention\" or \"full_attention\"");
    }
  }
  return Status::Ok();
}

Status ParseText(const json& obj, const std::string& path, const ConfigLimits& lim,
                 Gemma3TextConfig* t) {
  RETURN_IF_ERROR(RequireObject(obj, path));
  Fields f(obj, path);
  RETURN_IF_ERROR(f.Int("vocab_size", &t->vocab_size, 1, lim.max_vocab_size));
  RETURN_IF_ERROR(f.Int("hidden_size", &t->hidden_size, 1, lim.max_hidden_size));
  RETURN_IF_ERROR(f.Int("intermediate_size", &t->intermediate_size, 1, lim.max_intermediate_size));
  RETURN_IF_ERROR(f.Int("num_hidden_layers", &t->num_hidden_layers, 1, lim.max_layers));
  RETURN_IF_ERROR(f.Int("num_attention_heads", &t->num_attention_heads, 1, lim.max_heads));
  RETURN_IF_ERROR(f.Int("num_key_value_heads", &t->num_key_value_heads, 1, lim.max_heads));
  RETURN_IF_ERROR(f.Int("head_dim", &t->head_dim, 2, lim.max_head_dim));
  RETURN_IF_ERROR(f.Float("query_pre_attn_scalar", &t->query_pre_attn_scalar, 0, 1e9, true));
  RETURN_IF_ERROR(f.Float("rms_norm_eps", &t->rms_norm_eps, 0, 1, true));
  RETURN_IF_ERROR(f.Int("sliding_window", &t->sliding_window, 1, lim.max_positions));
  RETURN_IF_ERROR(
      f.Int("max_position_embeddings", &t->max_position_embeddings, 1, lim.max_positions));
  RETURN_IF_ERROR(f.Bool("attention_bias", &t->attention_bias));
  RETURN_IF_ERROR(f.Bool("tie_word_embeddings", &t->tie_word_embeddings));
  RETURN_IF_ERROR(f.String("hidden_activation", &t->hidden_activation));
  const int64_t kMaxId = t->vocab_size - 1;
  if (f.HasNonNull("pad_token_id"))
    RETURN_IF_ERROR(f.Int("pad_token_id", &t->pad_token_id, 0, kMaxId));
  if (f.HasNonNull("bos_token_id"))
    RETURN_IF_ERROR(f.Int("bos_token_id", &t->bos_token_id, 0, kMaxId));
  RETURN_IF_ERROR(f.IntOrIntList("eos_token_id", &t->eos_token_ids, 0, kMaxId));

  // Structural rules transformers enforces or the model math needs.
  if (t->num_attention_heads % t->num_key_value_heads != 0) {
    return f.Error("num_key_value_heads", std::to_string(t->num_key_value_heads) +
                                              " does not divide num_attention_heads " +
                                              std::to_string(t->num_attention_heads) +
                                              " (grouped-query attention)");
  }
  if (t->hidden_size % t->num_attention_heads != 0) {
    return f.Error("num_attention_heads", std::to_string(t->num_attention_heads) +
                                              " does not divide hidden_size " +
                                              std::to_string(t->hidden_size));
  }
  if (t->head_dim % 2 != 0) {
    return f.Error("head_dim", std::to_string(t->head_dim) +
                                   " is odd; rotate-half RoPE needs an "
                                   "even head dimension");
  }
  if (t->hidden_activation != "gelu_pytorch_tanh") {
    return UnimplementedError(f.Name("hidden_activation") + ": \"" + t->hidden_activation +
                              "\" is not supported (Gemma 3 uses \"gelu_pytorch_tanh\")");
  }
  for (const char* cap : {"final_logit_softcapping", "attn_logit_softcapping"}) {
    if (f.HasNonNull(cap)) {
      return UnimplementedError(f.Name(cap) +
                                ": soft-capping is not supported (Gemma 3 sets null)");
    }
  }
  bool bidirectional = false;
  RETURN_IF_ERROR(f.Bool("use_bidirectional_attention", &bidirectional));
  if (bidirectional) {
    return UnimplementedError(f.Name("use_bidirectional_attention") +
                              ": bidirectional text attention (EmbeddingGemma) is not supported");
  }

  // Layer schedule: an explicit layer_types list wins; else the v4.50 sliding_window_pattern
  // (layer i is global iff (i + 1) % pattern == 0; default 6).
  if (f.HasNonNull("layer_types")) {
    RETURN_IF_ERROR(
        ParseLayerTypes(f, *f.Find("layer_types"), t->num_hidden_layers, &t->layer_types));
  } else {
    int64_t pattern = 6;
    RETURN_IF_ERROR(f.Int("sliding_window_pattern", &pattern, 1, lim.max_layers));
    t->layer_types.clear();
    for (int64_t i = 0; i < t->num_hidden_layers; ++i) {
      t->layer_types.push_back((i + 1) % pattern == 0 ? LayerType::kFullAttention
                                                      : LayerType::kSlidingAttention);
    }
  }

  // RoPE. Defaults: full θ = rope_theta (1e6), sliding θ = rope_local_base_freq (1e4). Then the v5
  // rope_parameters dict (keyed by layer type), then a legacy rope_scaling on the full layers.
  RETURN_IF_ERROR(f.Float("rope_theta", &t->rope_full.theta, 0.0, 1e12, true));
  RETURN_IF_ERROR(f.Float("rope_local_base_freq", &t->rope_sliding.theta, 0.0, 1e12, true));
  if (f.HasNonNull("rope_parameters")) {
    const json& rp = *f.Find("rope_parameters");
    RETURN_IF_ERROR(RequireObject(rp, f.Name("rope_parameters")));
    for (const auto& [key, value] : rp.items()) {
      RopeParams* target = key == "full_attention"      ? &t->rope_full
                           : key == "sliding_attention" ? &t->rope_sliding
                                                        : nullptr;
      if (!target) {
        return f.Error(
            "rope_parameters",
            "unexpected key \"" + key +
                "\"; Gemma 3 keys RoPE by layer type (full_attention, sliding_attention)");
      }
      if (value.is_null()) continue;
      RETURN_IF_ERROR(ResolveRope(value, f.Name("rope_parameters") + "." + key, target));
    }
  }
  if (f.HasNonNull("rope_scaling")) {
    RETURN_IF_ERROR(ResolveRope(*f.Find("rope_scaling"), f.Name("rope_scaling"), &t->rope_full));
  }
  return Status::Ok();
}

// image_size / patch_size may be an int or a [h, w] pair; only square sizes are supported.
Status SquareSize(const Fields& f, const char* key, int64_t* out, int64_t hi) {
  const json* v = f.Find(key);
  if (!v) return Status::Ok();
  if (v->is_array()) {
    if (v->size() != 2) return f.Error(key, "must be an integer or a [height, width] pair");
    int64_t h = 0, w = 0;
    RETURN_IF_ERROR(f.IntValue((*v)[0], key, &h, 1, hi));
    RETURN_IF_ERROR(f.IntValue((*v)[1], key, &w, 1, hi));
    if (h != w) {
      return UnimplementedError(f.Name(key) + ": non-square " + std::to_string(h) + "x" +
                                std::to_string(w) + " is not supported");
    }
    *out = h;
    return Status::Ok();
  }
  return f.Int(key, out, 1, hi);
}

Status ParseVision(const json& obj, const std::string& path, const ConfigLimits& lim,
                   SiglipVisionConfig* v) {
  RETURN_IF_ERROR(RequireObject(obj, path));
  Fields f(obj, path);
  RETURN_IF_ERROR(f.Int("hidden_size", &v->hidden_size, 1, lim.max_hidden_size));
  RETURN_IF_ERROR(f.Int("intermediate_size", &v->intermediate_size, 1, lim.max_intermediate_size));
  RETURN_IF_ERROR(f.Int("num_hidden_layers", &v->num_hidden_layers, 1, lim.max_layers));
  RETURN_IF_ERROR(f.Int("num_attention_heads", &v->num_attention_heads, 1, lim.max_heads));
  RETURN_IF_ERROR(f.Int("num_channels", &v->num_channels, 1, 16));
  RETURN_IF_ERROR(SquareSize(f, "image_size", &v->image_size, lim.max_image_size));
  RETURN_IF_ERROR(SquareSize(f, "patch_size", &v->patch_size, lim.max_image_size));
  RETURN_IF_ERROR(f.Float("layer_norm_eps", &v->layer_norm_eps, 0, 1, true));
  RETURN_IF_ERROR(f.String("hidden_act", &v->hidden_act));
  if (f.HasNonNull("vision_use_head")) RETURN_IF_ERROR(f.Bool("vision_use_head", &v->use_head));

  if (v->hidden_size % v->num_attention_heads != 0) {
    return f.Error("num_attention_heads", std::to_string(v->num_attention_heads) +
                                              " does not divide hidden_size " +
                                              std::to_string(v->hidden_size));
  }
  if (v->num_channels != 3) {
    return UnimplementedError(f.Name("num_channels") + ": " + std::to_string(v->num_channels) +
                              " input channels; only RGB (3) is supported");
  }
  if (v->image_size % v->patch_size != 0) {
    return f.Error("patch_size", std::to_string(v->patch_size) + " does not divide image_size " +
                                     std::to_string(v->image_size));
  }
  if (v->num_patches() > lim.max_patches) {
    return f.Error("patch_size",
                   "(image_size / patch_size)^2 = " + std::to_string(v->num_patches()) +
                       " patches exceeds " + std::to_string(lim.max_patches));
  }
  if (v->hidden_act != "gelu_pytorch_tanh") {
    return UnimplementedError(f.Name("hidden_act") + ": \"" + v->hidden_act +
                              "\" is not supported (Gemma 3's SigLIP uses \"gelu_pytorch_tanh\")");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Gemma3Config> ParseGemma3Config(std::string_view json_text, const std::string& source,
                                         const ConfigLimits& lim) {
  if (json_text.size() > lim.max_file_bytes) {
    return InvalidArgumentError(source + ": " + std::to_string(json_text.size()) +
                                " bytes, over the limit of " + std::to_string(lim.max_file_bytes));
  }
  ASSIGN_OR_RETURN(json root, ParseJsonBounded(json_text, lim.max_json_depth, source));
  Gemma3Config c;
  Status s = [&]() -> Status {
    RETURN_IF_ERROR(RequireObject(root, "top level"));
    Fields f(root, "");
    RETURN_IF_ERROR(f.String("model_type", &c.model_type));
    if (!f.Has("model_type")) return f.Error("model_type", "is missing");
    if (f.HasNonNull("architectures")) {
      const json& a = *f.Find("architectures");
      if (!a.is_array() || (!a.empty() && !a[0].is_string())) {
        return f.Error("architectures", "must be a list of strings");
      }
      if (!a.empty()) c.architecture = a[0].get<std::string>();
    }
    if (f.HasNonNull("torch_dtype")) RETURN_IF_ERROR(f.String("torch_dtype", &c.dtype));
    if (f.HasNonNull("dtype")) RETURN_IF_ERROR(f.String("dtype", &c.dtype));

    if (c.model_type == "gemma3_text") {  // text-only checkpoint: the text fields are top-level
      c.has_vision = false;
      RETURN_IF_ERROR(ParseText(root, "", lim, &c.text));
      c.eos_token_ids = c.text.eos_token_ids;
      return Status::Ok();
    }
    if (c.model_type != "gemma3") {
      return f.Error("model_type", "\"" + c.model_type +
                                       "\" is not a Gemma 3 model (expected \"gemma3\" or "
                                       "\"gemma3_text\")");
    }
    c.has_vision = true;
    if (f.HasNonNull("text_config")) {
      const json& tc = *f.Find("text_config");
      RETURN_IF_ERROR(ParseText(tc, "text_config", lim, &c.text));
      if (tc.is_object() && tc.contains("model_type") && tc["model_type"] != "gemma3_text") {
        return InvalidArgumentError("text_config.model_type: must be \"gemma3_text\"");
      }
    } else {
      RETURN_IF_ERROR(ParseText(json::object(), "text_config", lim, &c.text));
    }
    if (f.HasNonNull("vision_config")) {
      const json& vc = *f.Find("vision_config");
      RETURN_IF_ERROR(ParseVision(vc, "vision_config", lim, &c.vision));
      if (vc.contains("model_type") && vc["model_type"] != "siglip_vision_model") {
        return InvalidArgumentError("vision_config.model_type: must be \"siglip_vision_model\"");
      }
    }
    // The multimodal class ties its LM head by the top-level flag (text_config's is not read).
    c.text.tie_word_embeddings = true;
    RETURN_IF_ERROR(f.Bool("tie_word_embeddings", &c.text.tie_word_embeddings));

    RETURN_IF_ERROR(
        f.Int("mm_tokens_per_image", &c.mm_tokens_per_image, 1, lim.max_mm_tokens_per_image));
    const int64_t max_id = std::numeric_limits<int32_t>::max();
    // Both spellings exist: *_index (written by 4.5x) and the *_id aliases.
    for (auto [index_key, id_key, out] :
         {std::tuple{"boi_token_index", "boi_token_id", &c.boi_token_id},
          std::tuple{"eoi_token_index", "eoi_token_id", &c.eoi_token_id},
          std::tuple{"image_token_index", "image_token_id", &c.image_token_id}}) {
      RETURN_IF_ERROR(f.Int(index_key, out, 0, max_id));
      RETURN_IF_ERROR(f.Int(id_key, out, 0, max_id));
    }
    // Not checked against vocab_size: transformers' tiny test configs keep the real ids with a
    // small vocabulary. Whether a tokenizer's ids fit the embedding is checked where the two meet.
    c.eos_token_ids = c.text.eos_token_ids;
    RETURN_IF_ERROR(f.IntOrIntList("eos_token_id", &c.eos_token_ids, 0, c.text.vocab_size - 1));

    // Projector geometry (spec §5): a square number of soft tokens pooled from the patch grid.
    const int64_t side = c.tokens_per_side();
    if (side * side != c.mm_tokens_per_image) {
      return f.Error("mm_tokens_per_image",
                     std::to_string(c.mm_tokens_per_image) + " is not a perfect square");
    }
    if (c.vision.patches_per_side() % side != 0) {
      return f.Error("mm_tokens_per_image", "sqrt(" + std::to_string(c.mm_tokens_per_image) +
                                                ") = " + std::to_string(side) +
                                                " does not divide the " +
                                                std::to_string(c.vision.patches_per_side()) +
                                                " patches per side (image_size / patch_size)");
    }
    return Status::Ok();
  }();
  if (!s.ok()) return s.WithPrefix(source);
  // Size products (parameter counts, bytes) must fit comfortably: checked arithmetic and a cap.
  auto counts = CountParameters(c);
  if (!counts.ok()) return counts.status().WithPrefix(source);
  if (counts->total > lim.max_parameters) {
    return InvalidArgumentError(source + ": the model would have " + std::to_string(counts->total) +
                                " parameters, over the limit of " +
                                std::to_string(lim.max_parameters));
  }
  return c;
}

StatusOr<Gemma3Config> LoadGemma3Config(const std::string& path, const ConfigLimits& limits) {
  ASSIGN_OR_RETURN(std::string text, ReadFileBounded(path, limits.max_file_bytes));
  return ParseGemma3Config(text, path, limits);
}

}  // namespace vlmserve
