// ParseGemma3Config / LoadGemma3Config: config.json → a validated Gemma3Config (config.h), the
// model's total size included (parameter counts from model_stats.h are capped by
// ConfigLimits::max_parameters). Every error names the file and the field.
#pragma once

#include <string>
#include <string_view>

#include "model/weights/config.h"

namespace vlmserve {

// Parses and validates config.json text. `source` names it in error messages.
StatusOr<Gemma3Config> ParseGemma3Config(std::string_view json_text,
                                         const std::string& source = "config.json",
                                         const ConfigLimits& limits = kConfigLimits);

// Reads `path` (size-capped) and parses it.
StatusOr<Gemma3Config> LoadGemma3Config(const std::string& path,
                                        const ConfigLimits& limits = kConfigLimits);

}  // namespace vlmserve
