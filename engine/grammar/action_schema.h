// ActionSchema: what an action may look like — an object of required properties in a fixed order,
// each an enum of strings, a bounded string over a character class, a bounded integer or a
// boolean. It is written as compact JSON with one space after ':' and ',':
//
//   {"button": "right", "reasoning": "clear_path", "context": "navigation"}
//
// Three ways to get one:
//   DefaultActionSchema()   the seed agent's action: button ∈ kButtons, reasoning 1–64 characters of
//                           [a-z0-9_ ], context ∈ kContexts;
//   NarrowButtons(list)     the default with fewer buttons (GenerationOptions.allowed_buttons);
//   ParseActionSchema(json) a JSON Schema subset (GenerationOptions.action_schema):
//       {"type": "object", "properties": {NAME: PROP, ...}, "required": [every NAME],
//        "additionalProperties": false}                   ("required" and "additionalProperties"
//                                                          optional; properties keep their order)
//       PROP: {"type": "string", "enum": [...]}  or  {"enum": [...]}   (strings only)
//             {"type": "string", "maxLength": N, "minLength": M, "pattern": "^[CLASS]*$"}
//                 (maxLength required, ≤ 256; minLength default 1; the pattern may also end in
//                  +$ or {m,n}$; without a pattern: printable ASCII but '"' and '\')
//             {"type": "integer", "minimum": A, "maximum": B}   (both required, |A|, |B| ≤ 1e15)
//             {"type": "boolean"}
//       "title", "description" and "$schema" are accepted and ignored anywhere. Anything else is
//       INVALID_ARGUMENT naming the keyword.
// Names, enum values and string characters are printable ASCII without '"' and '\', so the JSON
// text needs no escapes and a value's end is always told by the next byte.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vlmserve {

inline constexpr const char* kButtons[] = {"a",  "b",    "start", "select", "up",
                                           "down", "left", "right", "l",      "r"};
inline constexpr const char* kContexts[] = {"navigation", "battle", "menu", "dialogue", "other"};

struct SchemaLimits {
  size_t max_text_bytes = 16 << 10;
  size_t max_properties = 32;
  size_t max_name_bytes = 64;
  size_t max_enum_values = 256;
  size_t max_enum_value_bytes = 64;
  int64_t max_string_length = 256;
  int64_t max_integer_magnitude = 1000000000000000;  // 1e15: exact in a double, far from int64's end
};
inline constexpr SchemaLimits kSchemaLimits{};

struct SchemaValue {
  enum class Kind { kEnum, kString, kInteger, kBoolean } kind = Kind::kEnum;
  std::vector<std::string> values;  // kEnum
  std::bitset<256> chars;           // kString: the character class
  int64_t min_length = 1, max_length = 64;
  int64_t minimum = 0, maximum = 0;  // kInteger
};

struct SchemaProperty {
  std::string name;
  SchemaValue value;
};

struct ActionSchema {
  std::vector<SchemaProperty> properties;
  // A canonical JSON text of the schema: equal schemas have equal texts (the compile cache key).
  std::string canonical;
};

ActionSchema DefaultActionSchema();
// INVALID_ARGUMENT for an empty list or a name that is not one of kButtons. Duplicates are merged;
// the buttons keep kButtons' order.
StatusOr<ActionSchema> NarrowButtons(const std::vector<std::string>& allowed);
StatusOr<ActionSchema> ParseActionSchema(std::string_view json_text,
                                         const SchemaLimits& limits = kSchemaLimits);

}  // namespace vlmserve
