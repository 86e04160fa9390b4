// Bounded JSON input for untrusted model files (reliability.md rule 5): a file-size cap checked
// before reading, a nesting-depth cap checked before parsing (a deep "[[[[..." document must not
// exhaust the stack), and parse errors turned into Status with the byte position.
// Shared by config.json now and by tokenizer.json / safetensors headers later.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace vlmserve {

// Reads a whole regular file of at most `max_bytes` bytes. NOT_FOUND when it does not exist,
// INVALID_ARGUMENT when it is not a regular file or too large.
StatusOr<std::string> ReadFileBounded(const std::string& path, uint64_t max_bytes);

// INVALID_ARGUMENT when arrays/objects nest deeper than `max_depth` (strings are skipped).
Status CheckJsonDepth(std::string_view text, int max_depth);

// Depth check + parse. `source` names the input in error messages (e.g. "model/config.json").
StatusOr<nlohmann::json> ParseJsonBounded(std::string_view text, int max_depth,
                                          const std::string& source);

}  // namespace vlmserve
