// The tensors a Gemma 3 checkpoint must contain, under one internal name set, and the mapping from
// the names found in files (spec §9.1):
//
//   internal        hub / 4.50 / v5 default save        runtime (4.52+, v5
//   save_original_format=False) lm.*            language_model.model.* model.language_model.*
//   vision.*        vision_tower.vision_model.*          model.vision_tower.vision_model.*
//                   vision_tower.*  (v5 saves, whose SigLIP has no vision_model level)
//                                                        model.vision_tower.*
//   projector.*     multi_modal_projector.*              model.multi_modal_projector.*
//   lm_head.weight  language_model.lm_head.weight        lm_head.weight
//   text-only (Gemma3ForCausalLM): model.* → lm.*, lm_head.weight → lm_head.weight
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/weights/config.h"

namespace vlmserve {

enum class Component { kVisionTower, kProjector, kLanguageModel, kLmHead };
const char* ComponentName(Component c);

struct ExpectedTensor {
  std::string name;            // internal name, e.g. "lm.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // as transformers stores it (nn.Linear: [out, in])
  Component component;
};

// Every tensor the config implies, in a stable order. "lm_head.weight" only when untied.
std::vector<ExpectedTensor> ExpectedTensors(const Gemma3Config& config);

// The internal name for a name found in a file, or nullopt if it belongs to no known convention.
// `text_only` selects the Gemma3ForCausalLM prefixes; `matched_prefix` (optional) receives the
// file-side prefix that matched.
std::optional<std::string> InternalWeightName(std::string_view file_name, bool text_only,
                                              std::string_view* matched_prefix = nullptr);

// How `internal_name` may appear in files, for error messages:
// "language_model.model.norm.weight or model.language_model.norm.weight".
std::string FileNameHint(const std::string& internal_name, bool text_only);

}  // namespace vlmserve
