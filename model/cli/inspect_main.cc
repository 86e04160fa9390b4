// vlmserve-inspect: what a Gemma 3 checkpoint is — components and their dimensions, parameters per
// component and in total, weight memory in bf16 and fp8, KV-cache bytes per token, and (for a
// checkpoint directory) the stored weights: files, dtype, naming convention, parameters counted
// from the actual tensors after full validation. Human-readable by default, `--json` for machines.
//
//   vlmserve-inspect MODEL_DIR                 config.json + model.safetensors[.index.json]
//   vlmserve-inspect --config-only FILE        any config JSON, whatever its name
//   ... --adapter DIR                          also a PEFT LoRA adapter: validated against the
//                                              base (and merged into its weights, with MODEL_DIR)
//
// Exit codes: 0 success, 1 the model/config is invalid or unreadable, 2 bad command line.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "model/weights/checkpoint.h"
#include "model/weights/config_json.h"
#include "model/weights/lora_adapter.h"
#include "model/weights/model_stats.h"

namespace vlmserve {
namespace {

using nlohmann::ordered_json;

// 4300079472 → "4,300,079,472".
std::string Grouped(uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string Gigabytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GB", static_cast<double>(bytes) / 1e9);
  return buf;
}

ordered_json RopeJson(const RopeParams& r) {
  return {{"rope_type", RopeTypeName(r.type)}, {"theta", r.theta}, {"factor", r.factor}};
}

std::string RopeText(const RopeParams& r) {
  char buf[96];
  if (r.type == RopeType::kLinear) {
    std::snprintf(buf, sizeof(buf), "theta %g, linear scaling x%g", r.theta, r.factor);
  } else {
    std::snprintf(buf, sizeof(buf), "theta %g, no scaling", r.theta);
  }
  return buf;
}

struct StoredWeights {
  std::vector<std::string> files;
  std::string dtype, naming;
  uint64_t tensor_bytes = 0;
  ParameterCounts params;
};

struct Report {
  std::string source;
  std::optional<StoredWeights> weights;  // absent with --config-only
  Gemma3Config config;
  ParameterCounts params;
  MemoryEstimate memory;
  uint64_t kv_context = 0;
  uint64_t kv_context_bytes = 0;
  std::optional<LoraAdapterInfo> adapter;
  bool adapter_merged = false;  // merged into the stored weights (not with --config-only)
};

ordered_json AdapterJson(const LoraAdapterInfo& a, bool merged) {
  return {{"name", a.name},
          {"path", a.path},
          {"naming", a.naming},
          {"base_model_name_or_path", a.base_model},
          {"peft_version", a.peft_version},
          {"rank", a.rank},
          {"min_rank", a.min_rank},
          {"max_rank", a.max_rank},
          {"alpha", a.alpha},
          {"rslora", a.rslora},
          {"target_modules", a.target_modules},
          {"targeted", a.targeted},
          {"language_modules", a.language_modules},
          {"vision_modules", a.vision_modules},
          {"lora_parameters", a.lora_parameters},
          {"modules_to_save_tensors", a.saved_tensors},
          {"modules_to_save_parameters", a.saved_parameters},
          {"fits_base", true},
          {"merged", merged}};
}

void PrintAdapter(const LoraAdapterInfo& a, bool merged) {
  std::string kinds;
  for (const std::string& k : a.targeted) kinds += (kinds.empty() ? "" : ", ") + k;
  std::printf("\nLoRA adapter     %s (%s names%s%s)\n", a.path.c_str(), a.naming.c_str(),
              a.peft_version.empty() ? "" : ", PEFT ", a.peft_version.c_str());
  std::printf("  rank %ld", a.rank);
  if (a.min_rank != a.max_rank) std::printf(" (per module %ld..%ld)", a.min_rank, a.max_rank);
  std::printf(", alpha %g, scale %s\n", a.alpha, a.rslora ? "alpha/sqrt(r) (rsLoRA)" : "alpha/r");
  std::printf("  targets        %s -> %ld language + %ld vision modules (%s)\n",
              a.target_modules.c_str(), a.language_modules, a.vision_modules, kinds.c_str());
  std::printf("  parameters     %18s added by A and B\n", Grouped(a.lora_parameters).c_str());
  if (!a.saved_tensors.empty()) {
    std::printf("  modules_to_save %zu tensor(s), %s parameters replace the base's\n",
                a.saved_tensors.size(), Grouped(a.saved_parameters).c_str());
  }
  std::printf("  fits this base  yes: every targeted layer exists with the adapter's shapes%s%s\n",
              a.base_model.empty() ? "" : "; trained on ", a.base_model.c_str());
  std::printf("  %s\n", merged ? "merged into the weights above (W + scale*B*A, fp32)"
                               : "validated against the config only (--config-only)");
}

std::vector<int64_t> GlobalLayers(const Gemma3TextConfig& t) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < t.layer_types.size(); ++i) {
    if (t.layer_types[i] == LayerType::kFullAttention) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

ordered_json ToJson(const Report& r) {
  const Gemma3Config& c = r.config;
  const Gemma3TextConfig& t = c.text;
  ordered_json j;
  j["source"] = r.source;
  j["model_type"] = c.model_type;
  j["architecture"] = c.architecture;
  j["dtype"] = c.dtype;
  if (c.has_vision) {
    const SiglipVisionConfig& v = c.vision;
    j["vision_tower"] = {{"kind", "siglip"},
                         {"layers", v.num_hidden_layers},
                         {"hidden_size", v.hidden_size},
                         {"attention_heads", v.num_attention_heads},
                         {"head_dim", v.head_dim()},
                         {"intermediate_size", v.intermediate_size},
                         {"image_size", v.image_size},
                         {"patch_size", v.patch_size},
                         {"patches_per_image", v.num_patches()},
                         {"pooling_head", v.use_head},
                         {"parameters", r.params.vision_tower}};
    j["projector"] = {{"pool_kernel", c.pool_kernel()},
                      {"tokens_per_image", c.mm_tokens_per_image},
                      {"input_dim", v.hidden_size},
                      {"output_dim", t.hidden_size},
                      {"parameters", r.params.projector}};
  } else {
    j["vision_tower"] = nullptr;
    j["projector"] = nullptr;
  }
  j["language_model"] = {{"layers", t.num_hidden_layers},
                         {"sliding_layers", t.NumLayersOfType(LayerType::kSlidingAttention)},
                         {"global_layers", GlobalLayers(t)},
                         {"sliding_window", t.sliding_window},
                         {"hidden_size", t.hidden_size},
                         {"attention_heads", t.num_attention_heads},
                         {"kv_heads", t.num_key_value_heads},
                         {"head_dim", t.head_dim},
                         {"attention_scale", t.AttentionScale()},
                         {"intermediate_size", t.intermediate_size},
                         {"vocab_size", t.vocab_size},
                         {"tied_lm_head", t.tie_word_embeddings},
                         {"rope_global", RopeJson(t.rope_full)},
                         {"rope_local", RopeJson(t.rope_sliding)},
                         {"embedding_parameters", r.params.embedding},
                         {"parameters", r.params.language_model}};
  if (r.weights) {
    const StoredWeights& w = *r.weights;
    ordered_json stored = {{"total", w.params.total},
                           {"language_model", w.params.language_model},
                           {"lm_head", w.params.lm_head}};
    if (c.has_vision) {
      stored["vision_tower"] = w.params.vision_tower;
      stored["projector"] = w.params.projector;
    }
    j["weights"] = {{"files", w.files},
                    {"dtype", w.dtype},
                    {"naming", w.naming},
                    {"tensor_bytes", w.tensor_bytes},
                    {"stored_parameters", stored}};
  } else {
    j["weights"] = nullptr;
  }
  j["adapter"] = r.adapter ? AdapterJson(*r.adapter, r.adapter_merged) : ordered_json(nullptr);
  j["lm_head_parameters"] = r.params.lm_head;
  j["total_parameters"] = r.params.total;
  j["memory"] = {{"weights_bf16_bytes", r.memory.weights_bf16_bytes},
                 {"weights_fp8_bytes", r.memory.weights_fp8_bytes},
                 {"fp8_rule", "linear-layer matrices in 1 byte; embeddings, norms, biases in bf16"},
                 {"kv_cache_bytes_per_token_per_layer", r.memory.kv_bytes_per_token_per_layer},
                 {"kv_cache_bytes_per_token", r.memory.kv_bytes_per_token},
                 {"kv_cache_context", r.kv_context},
                 {"kv_cache_bytes_at_context", r.kv_context_bytes}};
  return j;
}

void PrintText(const Report& r) {
  const Gemma3Config& c = r.config;
  const Gemma3TextConfig& t = c.text;
  std::printf("%s\n", r.source.c_str());
  std::printf("model            %s%s%s%s\n", c.model_type.c_str(),
              c.architecture.empty() ? "" : (" (" + c.architecture + ")").c_str(),
              c.dtype.empty() ? "" : ", stored as ", c.dtype.c_str());
  if (c.has_vision) {
    const SiglipVisionConfig& v = c.vision;
    std::printf(
        "vision tower     SigLIP: %ld layers, width %ld, %ld heads x %ld, MLP %ld; "
        "%ld px images, patch %ld -> %ld x %ld = %ld patches%s\n",
        v.num_hidden_layers, v.hidden_size, v.num_attention_heads, v.head_dim(),
        v.intermediate_size, v.image_size, v.patch_size, v.patches_per_side(), v.patches_per_side(),
        v.num_patches(), v.use_head ? "; builds the unused pooling head" : "");
    std::printf(
        "projector        average-pool %ld x %ld -> %ld tokens per image, "
        "RMSNorm(%ld), %ld -> %ld\n",
        c.pool_kernel(), c.pool_kernel(), c.mm_tokens_per_image, v.hidden_size, v.hidden_size,
        t.hidden_size);
  }
  std::string globals;
  for (int64_t i : GlobalLayers(t)) globals += (globals.empty() ? "" : " ") + std::to_string(i);
  std::printf(
      "language model   %ld layers (%ld sliding-window %ld, %ld global: %s), width %ld, "
      "%ld q / %ld kv heads x %ld, MLP %ld, vocab %ld, LM head %s\n",
      t.num_hidden_layers, t.NumLayersOfType(LayerType::kSlidingAttention), t.sliding_window,
      t.NumLayersOfType(LayerType::kFullAttention), globals.empty() ? "none" : globals.c_str(),
      t.hidden_size, t.num_attention_heads, t.num_key_value_heads, t.head_dim, t.intermediate_size,
      t.vocab_size, t.tie_word_embeddings ? "tied to the embedding" : "separate");
  std::printf("                 RoPE global: %s; local: %s; attention scale %g\n",
              RopeText(t.rope_full).c_str(), RopeText(t.rope_sliding).c_str(), t.AttentionScale());
  std::printf("\nparameters\n");
  if (c.has_vision) {
    std::printf("  vision tower   %18s\n", Grouped(r.params.vision_tower).c_str());
    std::printf("  projector      %18s\n", Grouped(r.params.projector).c_str());
  }
  std::printf("  language model %18s   (embedding %s)\n", Grouped(r.params.language_model).c_str(),
              Grouped(r.params.embedding).c_str());
  if (r.params.lm_head) std::printf("  LM head        %18s\n", Grouped(r.params.lm_head).c_str());
  std::printf("  total          %18s\n", Grouped(r.params.total).c_str());
  if (r.weights) {
    const StoredWeights& w = *r.weights;
    std::printf("\nstored weights   %zu file(s), %s, %s bytes, names %s\n", w.files.size(),
                w.dtype.c_str(), Grouped(w.tensor_bytes).c_str(), w.naming.c_str());
    std::printf(
        "  counted from the tensors: vision %s, projector %s, language model %s%s, "
        "total %s (validated against the config)\n",
        Grouped(w.params.vision_tower).c_str(), Grouped(w.params.projector).c_str(),
        Grouped(w.params.language_model).c_str(),
        w.params.lm_head ? (", LM head " + Grouped(w.params.lm_head)).c_str() : "",
        Grouped(w.params.total).c_str());
  }
  std::printf("\nweights in memory\n");
  std::printf("  bf16           %18s bytes  %s\n", Grouped(r.memory.weights_bf16_bytes).c_str(),
              Gigabytes(r.memory.weights_bf16_bytes).c_str());
  std::printf(
      "  fp8            %18s bytes  %s  (linear-layer matrices 1 byte; embeddings, norms, "
      "biases bf16)\n",
      Grouped(r.memory.weights_fp8_bytes).c_str(), Gigabytes(r.memory.weights_fp8_bytes).c_str());
  std::printf("\nKV cache (bf16)\n");
  std::printf("  per token      %18s bytes  (%s per layer x %ld layers)\n",
              Grouped(r.memory.kv_bytes_per_token).c_str(),
              Grouped(r.memory.kv_bytes_per_token_per_layer).c_str(), t.num_hidden_layers);
  std::printf("  at %-8s     %18s bytes  (sliding layers keep at most %ld tokens)\n",
              Grouped(r.kv_context).c_str(), Grouped(r.kv_context_bytes).c_str(), t.sliding_window);
  if (r.adapter) PrintAdapter(*r.adapter, r.adapter_merged);
}

int Run(int argc, char** argv) {
  CLI::App app{
      "vlmserve-inspect: describe a Gemma 3 model from its config.json: components and their "
      "dimensions, parameters per component and in total, weight memory in bf16 and fp8, and "
      "KV-cache bytes per token. The counts equal transformers' for the same config."};
  std::string model_dir, config_file, adapter_dir;
  bool as_json = false;
  uint64_t context = 4096;
  app.add_option("MODEL_DIR", model_dir, "Checkpoint directory (reads MODEL_DIR/config.json)");
  auto* cfg_opt = app.add_option("--config-only", config_file,
                                 "Read this config JSON file instead of a checkpoint directory");
  app.add_option("--adapter", adapter_dir,
                 "A PEFT LoRA adapter directory: report its rank, alpha, targets and parameters, "
                 "validated against the base (and merged into MODEL_DIR's weights)");
  app.add_flag("--json", as_json, "Print one JSON object instead of the text report");
  app.add_option("--context", context, "Context length for the KV-cache example (tokens)")
      ->default_val(4096)
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 24));
  cfg_opt->excludes(app.get_option("MODEL_DIR"));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (model_dir.empty() && config_file.empty()) {
    std::fprintf(stderr, "vlmserve-inspect: give MODEL_DIR or --config-only FILE (see --help)\n");
    return 2;
  }

  Report r;
  r.source = config_file.empty() ? (std::filesystem::path(model_dir) / "config.json").string()
                                 : config_file;
  auto config = LoadGemma3Config(r.source);
  if (!config.ok()) {
    std::fprintf(stderr, "vlmserve-inspect: error: %s\n", config.status().ToString().c_str());
    return 1;
  }
  r.config = std::move(config).value();
  if (config_file.empty()) {
    auto ck = Checkpoint::Open(model_dir, r.config);
    if (!ck.ok()) {
      std::string hint;
      if (ck.status().code() == StatusCode::kNotFound &&
          ck.status().message().find("no model.safetensors") != std::string::npos) {
        hint = " (to describe a config alone: --config-only FILE)";
      }
      std::fprintf(stderr, "vlmserve-inspect: error: %s%s\n", ck.status().ToString().c_str(),
                   hint.c_str());
      return 1;
    }
    r.weights = StoredWeights{(*ck)->files(), (*ck)->DTypeSummary(), (*ck)->naming(),
                              (*ck)->total_bytes(), (*ck)->CountStoredParameters()};
    if (!adapter_dir.empty()) {
      auto adapter = LoraAdapter::Load(adapter_dir, r.config);
      Status merged = adapter.ok() ? (*adapter)->MergeInto(**ck) : adapter.status();
      if (!merged.ok()) {
        std::fprintf(stderr, "vlmserve-inspect: error: %s\n", merged.ToString().c_str());
        return 1;
      }
      r.adapter = (*adapter)->info();
      r.adapter_merged = true;
    }
  } else if (!adapter_dir.empty()) {
    auto adapter = LoraAdapter::Load(adapter_dir, r.config);
    if (!adapter.ok()) {
      std::fprintf(stderr, "vlmserve-inspect: error: %s\n", adapter.status().ToString().c_str());
      return 1;
    }
    r.adapter = (*adapter)->info();
  }
  auto params = CountParameters(r.config);
  auto memory = params.ok() ? EstimateMemory(r.config) : StatusOr<MemoryEstimate>(params.status());
  auto kv = memory.ok() ? KvCacheBytes(r.config, context) : StatusOr<uint64_t>(memory.status());
  if (!kv.ok()) {
    std::fprintf(stderr, "vlmserve-inspect: error: %s\n", kv.status().ToString().c_str());
    return 1;
  }
  r.params = *params;
  r.memory = *memory;
  r.kv_context = context;
  r.kv_context_bytes = *kv;
  if (as_json) {
    std::printf("%s\n", ToJson(r).dump(2).c_str());
  } else {
    PrintText(r);
  }
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
