// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), validated as
// untrusted input against the base model and merged into its weights at load:
//
//   W ← W + scale · B · A      A [r, in], B [out, r]; scale = alpha / r (or alpha / √r, rsLoRA)
//
// computed in fp32 (B·A accumulated in fp32, then scaled, then added: PEFT's merge_and_unload
// order) and stored in the Checkpoint as an fp32 tensor, so each runner rounds it once to its own
// dtype through the same loading path as every other weight; serving then costs nothing extra.
// A QLoRA adapter (trained against a 4-bit base) is merged into the unquantized base like any
// other.
//
// Names: the file's tensors are "base_model.model.<module>.lora_A.weight" / "...lora_B.weight", the
// module named as in the transformers version that trained it. Three eras of
// Gemma3ForConditionalGeneration (and Gemma3ForCausalLM for text-only bases) are recognised:
//   4.50–4.51  language_model.model.layers.N…   vision_tower.vision_model.encoder.layers.N…
//   4.52–4.57  model.language_model.layers.N…   model.vision_tower.vision_model.encoder.layers.N…
//   5.x        model.language_model.layers.N…   model.vision_tower.encoder.layers.N…
// whatever naming the base checkpoint's own files use. The adapter is accepted when, in one era,
// the set of linear layers adapter_config.json targets (lora_config.h, PEFT's rules) is exactly
// the set of modules the file has LoRA tensors for, each pair with the configured rank and the
// base's in/out features. modules_to_save tensors replace the base's (same shape), and so does the
// "<module>.base_layer.weight" PEFT saves for a targeted LM head (before its LoRA is merged).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/weights/checkpoint.h"
#include "model/weights/config.h"
#include "model/weights/lora_config.h"
#include "model/weights/safetensors.h"

namespace vlmserve {

struct LoraAdapterInfo {
  std::string path;        // the directory as given
  std::string name;        // its last component (what GetModelInfo reports)
  std::string naming;      // e.g. "transformers 5.x" ("4.52–4.57 or 5.x" when both fit)
  std::string base_model;  // adapter_config.json's base_model_name_or_path (informational)
  std::string peft_version;
  int64_t rank = 0;                    // r
  int64_t min_rank = 0, max_rank = 0;  // over the merged modules (rank_pattern)
  double alpha = 0;                    // lora_alpha
  bool rslora = false;
  std::string target_modules;         // as configured, e.g. ["q_proj", "v_proj"]
  std::vector<std::string> targeted;  // the layer kinds merged, e.g. q_proj, fc1 (sorted)
  int64_t language_modules = 0, vision_modules = 0, other_modules = 0;
  uint64_t lora_parameters = 0;            // elements of every A and B: what the adapter adds
  std::vector<std::string> saved_tensors;  // modules_to_save tensors that replace the base's
  uint64_t saved_parameters = 0;
};

struct LoraAdapterLimits {
  uint64_t max_adapter_bytes = uint64_t{16} << 30;
  LoraConfigLimits config;
  SafetensorsLimits safetensors;
};
inline constexpr LoraAdapterLimits kLoraAdapterLimits{};

// A validated adapter, ready to merge.
class LoraAdapter {
 public:
  // Reads and validates `dir` against `config` (shapes from ExpectedTensors, no weights needed:
  // vlmserve-inspect uses this alone). Errors name the file and the reason: INVALID_ARGUMENT for a
  // corrupt or mismatched adapter, NOT_FOUND for missing files, UNIMPLEMENTED for valid PEFT
  // adapters of a kind we do not serve.
  static StatusOr<std::unique_ptr<LoraAdapter>> Load(
      const std::string& dir, const Gemma3Config& config,
      const LoraAdapterLimits& limits = kLoraAdapterLimits);

  // Merges into `checkpoint` (opened for the same config). All merged tensors are computed first
  // (fp32) and must be finite; only then are they installed, stored as `store` — the runner's
  // dtype (F32 for the CPU reference, BF16 for the CUDA runner: rounded once, at half the host
  // memory) — so on error the checkpoint is unchanged.
  Status MergeInto(Checkpoint& checkpoint, DType store = DType::kF32) const;

  const LoraAdapterInfo& info() const { return info_; }

 private:
  struct Module {
    std::string module;    // the module name in the adapter's era
    std::string internal;  // the base weight's internal name (weight_names.h)
    const TensorEntry* a = nullptr;
    const TensorEntry* b = nullptr;
    const TensorEntry* base = nullptr;  // "<module>.base_layer.weight" when PEFT saved it
    int64_t rank = 0, out = 0, in = 0;
    float scale = 0;
  };
  struct Saved {
    std::string internal;
    const TensorEntry* entry = nullptr;
  };
  LoraAdapter() = default;
  std::unique_ptr<SafetensorsFile> file_;
  std::vector<Module> modules_;
  std::vector<Saved> saved_;
  LoraAdapterInfo info_;
};

}  // namespace vlmserve
