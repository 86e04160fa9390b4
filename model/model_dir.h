// ModelDir: a Gemma 3 model directory loaded and cross-checked — config.json, the safetensors
// weights (validated, mapped), tokenizer.json, and generation_config.json when present.
//
// The tokenizer must fit the model: every id it can produce must be an embedding row, except the
// image soft token (its rows are overwritten, spec §3.6); for multimodal models its
// <start_of_image>, <end_of_image> and <image_soft_token> must be the config's boi/eoi/image ids.
// Stop ids come from generation_config.json's eos_token_id, else config.json's (spec §8).
// With an adapter, the weights are base + LoRA, merged at load (--adapter).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/text/tokenizer.h"
#include "model/weights/checkpoint.h"
#include "model/weights/config.h"
#include "model/weights/lora_adapter.h"

namespace vlmserve {

struct GenerationDefaults {
  std::vector<int32_t> stop_ids;
  bool do_sample = false;
  std::optional<float> temperature, top_p;
  std::optional<int32_t> top_k;
};

struct ModelDir {
  std::string path;
  Gemma3Config config;
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Tokenizer> tokenizer;
  GenerationDefaults generation;
  std::optional<LoraAdapterInfo> adapter;  // a PEFT LoRA adapter merged into `checkpoint`

  // `adapter_dir` (optional): a PEFT LoRA adapter directory, validated against the base and merged
  // into the checkpoint's weights before any runner sees them (lora_adapter.h).
  // `merged_dtype`: how the merged tensors are stored — the runner's dtype (F32 for the CPU
  // reference, BF16 for the CUDA runner).
  static StatusOr<ModelDir> Load(const std::string& dir, const std::string& adapter_dir = "",
                                 DType merged_dtype = DType::kF32);
};

}  // namespace vlmserve
