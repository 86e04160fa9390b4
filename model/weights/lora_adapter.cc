// LoRA adapter validation and merging (see lora_adapter.h).
#include "model/weights/lora_adapter.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "common/json_util.h"
#include "kernels/cpu/gemm.h"
#include "model/weights/weight_convert.h"
#include "model/weights/weight_names.h"

namespace vlmserve {
namespace {

namespace fs = std::filesystem;

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kWeightsFile[] = "adapter_model.safetensors";
constexpr char kKeyPrefix[] = "base_model.model.";

// How one transformers era names the modules of Gemma 3 (the prefixes of weight_names.h, as
// module paths of the live model PEFT wrapped).
struct Era {
  const char* name;
  const char* lm;       // decoder: <lm>layers.N.self_attn.q_proj
  const char* vision;   // SigLIP: <vision>encoder.layers.N.mlp.fc1
  const char* lm_head;  // the output head's module name
};
constexpr Era kMultimodalEras[] = {
    {"transformers 4.50–4.51", "language_model.model.", "vision_tower.vision_model.",
     "language_model.lm_head"},
    {"transformers 4.52–4.57", "model.language_model.", "model.vision_tower.vision_model.",
     "lm_head"},
    {"transformers 5.x", "model.language_model.", "model.vision_tower.", "lm_head"},
};
constexpr Era kTextOnlyEras[] = {{"Gemma3ForCausalLM", "model.", "", "lm_head"}};

// A linear layer of the base that LoRA could target.
struct Linear {
  std::string internal;  // e.g. lm.layers.0.self_attn.q_proj.weight
  int64_t out = 0, in = 0;
  Component component;
};

// Every nn.Linear of the base: 2-D "<module>.weight" tensors, except the embeddings (nn.Embedding)
// and the projector's raw parameter (not a module).
std::vector<Linear> LinearLayers(const Gemma3Config& config) {
  std::vector<Linear> out;
  for (const ExpectedTensor& t : ExpectedTensors(config)) {
    const std::string& n = t.name;
    if (t.shape.size() != 2 || n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) continue;
    if (n.find("embed_tokens") != std::string::npos ||
        n.find("position_embedding") != std::string::npos || n.rfind("projector.", 0) == 0) {
      continue;
    }
    out.push_back({n, t.shape[0], t.shape[1], t.component});
  }
  return out;
}

// The module name of `internal` in `era` ("lm.layers.0.mlp.fc1.weight" → "model.language_model.
// layers.0.mlp.fc1").
std::string ModuleName(const Era& era, const std::string& internal) {
  const std::string stem = internal.substr(0, internal.size() - 7);  // drop ".weight"
  if (stem == "lm_head") return era.lm_head;
  if (stem.rfind("lm.", 0) == 0) return era.lm + stem.substr(3);
  if (stem.rfind("vision.", 0) == 0) return era.vision + stem.substr(7);
  return stem;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string ShortName(const std::string& module) {
  const auto dot = module.rfind('.');
  return dot == std::string::npos ? module : module.substr(dot + 1);
}

std::vector<float> Widen(const SafetensorsFile& f, const TensorEntry& e) {
  Weight w;
  w.dtype = e.dtype;
  w.shape = e.shape;
  w.data = f.Data(e);
  return WeightToFloat(w);
}

bool AllFinite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

StatusOr<std::unique_ptr<LoraAdapter>> LoraAdapter::Load(const std::string& dir,
                                                         const Gemma3Config& config,
                                                         const LoraAdapterLimits& limits) {
  std::unique_ptr<LoraAdapter> a(new LoraAdapter());
  LoraAdapterInfo& info = a->info_;
  info.path = dir;
  const fs::path p = fs::path(dir).lexically_normal();
  info.name = (p.has_filename() ? p : p.parent_path()).filename().string();
  if (!fs::is_directory(dir)) return NotFoundError("--adapter " + dir + ": no such directory");

  // adapter_config.json
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  auto text = ReadFileBounded(config_path, limits.config.max_file_bytes);
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return NotFoundError(config_path + ": missing (a PEFT adapter directory has " + kConfigFile +
                           " and " + kWeightsFile + ")");
    }
    return text.status();
  }
  ASSIGN_OR_RETURN(LoraConfig cfg, ParseLoraConfig(*text, config_path, limits.config));
  info.base_model = cfg.base_model_name_or_path;
  info.peft_version = cfg.peft_version;
  info.rank = cfg.r;
  info.alpha = cfg.lora_alpha;
  info.rslora = cfg.use_rslora;
  info.target_modules = cfg.target_modules.Describe();

  // adapter_model.safetensors
  const std::string weights_path = (fs::path(dir) / kWeightsFile).string();
  if (!fs::exists(weights_path)) {
    if (fs::exists(fs::path(dir) / "adapter_model.bin")) {
      return UnimplementedError(weights_path +
                                ": missing; adapter_model.bin (a pickle) is not loaded: save the "
                                "adapter with safe_serialization=True (PEFT's default)");
    }
    return NotFoundError(weights_path + ": missing");
  }
  if (fs::is_regular_file(weights_path) && fs::file_size(weights_path) > limits.max_adapter_bytes) {
    return InvalidArgumentError(weights_path + ": larger than the " +
                                std::to_string(limits.max_adapter_bytes >> 20) + " MiB limit");
  }
  ASSIGN_OR_RETURN(a->file_, SafetensorsFile::Open(weights_path, limits.safetensors));
  const std::string& file = weights_path;

  // Sort the file's tensors: LoRA pairs per module, and modules_to_save copies.
  struct Pair {
    const TensorEntry* a = nullptr;
    const TensorEntry* b = nullptr;
  };
  std::map<std::string, Pair> pairs;  // module → its A and B
  // module → "<module>.base_layer.weight": PEFT saves the base weight of a targeted embedding-like
  // layer (the LM head) with the adapter, in case training resized the vocabulary; loading the
  // adapter puts it back, so the merge starts from it.
  std::map<std::string, const TensorEntry*> base_layers;
  const bool text_only = !config.has_vision;
  std::map<std::string, ExpectedTensor> expected;
  for (ExpectedTensor& t : ExpectedTensors(config)) expected.emplace(t.name, std::move(t));
  for (const TensorEntry& e : a->file_->header().tensors) {
    const std::string where = file + ": tensor \"" + e.name + "\"";
    if (e.name.rfind(kKeyPrefix, 0) != 0) {
      return InvalidArgumentError(where +
                                  " is not named like a PEFT adapter's (base_model.model.…)");
    }
    const std::string key = e.name.substr(sizeof(kKeyPrefix) - 1);
    if (EndsWith(key, ".lora_A.weight") || EndsWith(key, ".lora_B.weight")) {
      const std::string module = key.substr(0, key.size() - 14);
      Pair& pr = pairs[module];
      (key[key.size() - 8] == 'A' ? pr.a : pr.b) = &e;
      continue;
    }
    if (EndsWith(key, ".base_layer.weight")) {
      base_layers[key.substr(0, key.size() - 18)] = &e;
      continue;
    }
    if (key.find("lora_embedding_") != std::string::npos) {
      return UnimplementedError(where + ": LoRA on embedding layers is not supported");
    }
    if (key.find("lora_magnitude_vector") != std::string::npos) {
      return UnimplementedError(where + ": DoRA adapters are not supported");
    }
    if (EndsWith(key, ".lora_A.bias") || EndsWith(key, ".lora_B.bias")) {
      return UnimplementedError(where + ": LoRA biases (lora_bias) are not supported");
    }
    if (key.find(".lora_") != std::string::npos) {
      return InvalidArgumentError(where +
                                  ": not a LoRA tensor we know (expected <module>.lora_A."
                                  "weight / lora_B.weight, without an adapter name)");
    }
    // Anything else must be a full copy of a modules_to_save module's parameter.
    bool saved = false;
    for (const std::string& m : cfg.modules_to_save) {
      saved |= key.rfind(m + ".", 0) == 0 || key.find("." + m + ".") != std::string::npos;
    }
    if (!saved) {
      return InvalidArgumentError(where + ": neither a LoRA tensor nor part of modules_to_save");
    }
    auto internal = InternalWeightName(key, text_only);
    auto it = internal ? expected.find(*internal) : expected.end();
    if (it == expected.end()) {
      return InvalidArgumentError(where +
                                  ": modules_to_save names a tensor this base does not have");
    }
    if (*internal == "lm.embed_tokens.weight" || *internal == "lm_head.weight") {
      return UnimplementedError(where +
                                ": modules_to_save on the embedding or LM head is not "
                                "supported");
    }
    if (e.shape != it->second.shape) {
      return InvalidArgumentError(where + ": shape " + ShapeString(e.shape) + ", the base's " +
                                  *internal + " is " + ShapeString(it->second.shape));
    }
    a->saved_.push_back({*internal, &e});
  }
  for (const std::string& m : cfg.modules_to_save) {
    const bool any = std::any_of(a->saved_.begin(), a->saved_.end(), [&](const Saved& s) {
      const std::string& n = s.entry->name;
      return n.find("." + m + ".") != std::string::npos;
    });
    if (!any) {
      return InvalidArgumentError(config_path + ": modules_to_save names \"" + m + "\", but " +
                                  kWeightsFile + " holds none of its tensors");
    }
  }

  // Which era's module names the file uses: the one whose targeted linear layers are exactly the
  // file's modules.
  const std::vector<Linear> linears = LinearLayers(config);
  const std::span<const Era> eras =
      text_only ? std::span<const Era>(kTextOnlyEras) : std::span<const Era>(kMultimodalEras);
  std::vector<const Era*> fitting;
  std::vector<std::map<std::string, const Linear*>> candidates(eras.size()), targeted(eras.size());
  bool any_target = false;
  for (size_t i = 0; i < eras.size(); ++i) {
    for (const Linear& l : linears) {
      const std::string module = ModuleName(eras[i], l.internal);
      candidates[i][module] = &l;
      const bool head = l.component == Component::kLmHead;
      if (cfg.Targets(module) &&
          !(head && cfg.target_modules.kind() == ModuleMatcher::Kind::kAllLinear)) {
        targeted[i][module] = &l;
      }
    }
    any_target |= !targeted[i].empty();
    bool same = targeted[i].size() == pairs.size();
    for (const auto& [module, pr] : pairs) same = same && targeted[i].count(module);
    if (same) fitting.push_back(&eras[i]);
  }
  if (!any_target) {
    return InvalidArgumentError(config_path + ": target_modules " + cfg.target_modules.Describe() +
                                " matches no linear layer of this Gemma 3 model (an adapter for "
                                "another architecture?)");
  }
  if (pairs.empty()) {
    return InvalidArgumentError(file + ": holds no LoRA tensors (<module>.lora_A.weight)");
  }
  size_t era = 0;
  if (fitting.empty()) {
    // Explain the first difference, in the era whose names the file uses.
    size_t best = eras.size();
    for (size_t i = 0; i < eras.size() && best == eras.size(); ++i) {
      bool all_known = true;
      for (const auto& [module, pr] : pairs) all_known = all_known && candidates[i].count(module);
      if (all_known) best = i;
    }
    if (best == eras.size()) {
      for (const auto& [module, pr] : pairs) {
        bool known = false;
        for (size_t i = 0; i < eras.size(); ++i) known |= candidates[i].count(module) > 0;
        if (!known) {
          return InvalidArgumentError(
              file + ": \"" + kKeyPrefix + module +
              ".lora_A.weight\": this base has no linear layer " + module + " (" +
              std::to_string(config.text.num_hidden_layers) + " decoder layers" +
              (config.has_vision
                   ? ", " + std::to_string(config.vision.num_hidden_layers) + " vision layers"
                   : std::string()) +
              "; an adapter for another model?)");
        }
      }
      return InvalidArgumentError(file + ": its module names mix transformers versions");
    }
    for (const auto& [module, l] : targeted[best]) {
      if (!pairs.count(module)) {
        return InvalidArgumentError(
            config_path + ": target_modules " + cfg.target_modules.Describe() + " selects " +
            module + ", but " + kWeightsFile + " has no " + kKeyPrefix + module + ".lora_A.weight");
      }
    }
    for (const auto& [module, pr] : pairs) {
      if (!targeted[best].count(module)) {
        return InvalidArgumentError(file + ": LoRA tensors for " + module +
                                    ", which adapter_config.json does not target (target_modules " +
                                    cfg.target_modules.Describe() + ")");
      }
    }
    return InternalError(file + ": adapter targets disagree");  // unreachable
  }
  era = static_cast<size_t>(fitting.front() - eras.data());
  info.naming = fitting.front()->name;
  for (size_t i = 1; i < fitting.size(); ++i) info.naming += std::string(" or ") + fitting[i]->name;

  // Each module's pair: present, with the configured rank and the base's features.
  std::set<std::string> kinds;
  for (const auto& [module, l] : targeted[era]) {
    const Pair& pr = pairs.at(module);
    const std::string name_a = kKeyPrefix + module + ".lora_A.weight";
    const std::string name_b = kKeyPrefix + module + ".lora_B.weight";
    if (!pr.a || !pr.b) {
      return InvalidArgumentError(file + ": " + (pr.a ? name_a : name_b) + " has no " +
                                  (pr.a ? "lora_B" : "lora_A") + " partner");
    }
    if (l->component == Component::kLmHead && config.text.tie_word_embeddings) {
      return UnimplementedError(file + ": LoRA on " + module +
                                ", which is tied to the embedding, is not supported");
    }
    const int64_t r = cfg.RankFor(module);
    const std::vector<int64_t> want_a = {r, l->in}, want_b = {l->out, r};
    for (auto [entry, want, name] : {std::tuple{pr.a, want_a, name_a}, {pr.b, want_b, name_b}}) {
      if (entry->shape != want) {
        return InvalidArgumentError(
            file + ": " + name + ": shape " + ShapeString(entry->shape) + ", expected " +
            ShapeString(want) + " (rank " + std::to_string(r) + " from adapter_config.json; " +
            l->internal + " is [" + std::to_string(l->out) + ", " + std::to_string(l->in) +
            "] in the base: another model size, or r/rank_pattern disagree with the file)");
      }
    }
    const double scale = cfg.ScaleFor(module);
    if (!std::isfinite(scale) || !std::isfinite(static_cast<float>(scale))) {
      return InvalidArgumentError(config_path + ": the scale of " + module + " is not finite");
    }
    const TensorEntry* base = nullptr;
    if (auto it = base_layers.find(module); it != base_layers.end()) {
      base = it->second;
      if (base->shape != std::vector<int64_t>{l->out, l->in}) {
        return InvalidArgumentError(
            file + ": " + kKeyPrefix + module + ".base_layer.weight: shape " +
            ShapeString(base->shape) + ", the base's " + l->internal + " is " +
            ShapeString({l->out, l->in}) + " (a resized vocabulary is not supported)");
      }
      base_layers.erase(it);
    }
    a->modules_.push_back(
        {module, l->internal, pr.a, pr.b, base, r, l->out, l->in, static_cast<float>(scale)});
    kinds.insert(ShortName(module));
    info.lora_parameters += static_cast<uint64_t>(r) * static_cast<uint64_t>(l->in + l->out);
    info.min_rank = info.min_rank ? std::min(info.min_rank, r) : r;
    info.max_rank = std::max(info.max_rank, r);
    (l->component == Component::kVisionTower     ? info.vision_modules
     : l->component == Component::kLanguageModel ? info.language_modules
                                                 : info.other_modules)++;
  }
  if (!base_layers.empty()) {
    return InvalidArgumentError(file + ": " + kKeyPrefix + base_layers.begin()->first +
                                ".base_layer.weight belongs to no module the adapter targets");
  }
  info.targeted.assign(kinds.begin(), kinds.end());
  for (const Saved& s : a->saved_) {
    info.saved_tensors.push_back(s.internal);
    info.saved_parameters += s.entry->numel();
  }
  return a;
}

Status LoraAdapter::MergeInto(Checkpoint& checkpoint, DType store) const {
  std::vector<std::pair<std::string, std::vector<float>>> merged;
  const std::string& file = file_->path();
  for (const Module& m : modules_) {
    const Weight* w = checkpoint.Find(m.internal);
    if (!w || w->shape != std::vector<int64_t>{m.out, m.in}) {
      return InvalidArgumentError(file + ": the checkpoint's " + m.internal +
                                  " does not have the shape the adapter was validated against");
    }
    const std::vector<float> A = Widen(*file_, *m.a), B = Widen(*file_, *m.b);
    if (!AllFinite(A) || !AllFinite(B)) {
      return InvalidArgumentError(file + ": " + m.module + ": lora_A or lora_B holds NaN or inf");
    }
    // delta [out, in] = B [out, r] · A [r, in]: fp32, accumulated in r order.
    std::vector<float> delta(static_cast<size_t>(m.out * m.in));
    GemmRefArgs g;
    g.x = B.data();
    g.w = A.data();
    g.y = delta.data();
    g.m = m.out;
    g.n = m.in;
    g.k = m.rank;
    g.w_input_major = true;
    GemmRef(g);
    // The base weight: the checkpoint's, or the copy PEFT saved with the adapter.
    std::vector<float> W = m.base ? Widen(*file_, *m.base) : WeightToFloat(*w);
    if (m.base && !AllFinite(W)) {
      return InvalidArgumentError(file + ": " + m.module + ".base_layer.weight holds NaN or inf");
    }
    for (size_t i = 0; i < W.size(); ++i) W[i] += delta[i] * m.scale;
    if (!AllFinite(W)) {
      return InvalidArgumentError(file + ": merging " + m.module +
                                  " gives non-finite weights (scale × B·A overflows fp32)");
    }
    merged.emplace_back(m.internal, std::move(W));
  }
  for (const Saved& s : saved_) {
    std::vector<float> v = Widen(*file_, *s.entry);
    if (!AllFinite(v)) {
      return InvalidArgumentError(file + ": " + s.entry->name + " holds NaN or inf");
    }
    merged.emplace_back(s.internal, std::move(v));
  }
  for (auto& [name, values] : merged) {
    RETURN_IF_ERROR(checkpoint.ReplaceWithFloat(name, std::move(values), store));
  }
  return Status::Ok();
}

}  // namespace vlmserve
