// The action schema: the default, the narrowed default and the JSON Schema subset (see
// action_schema.h).
#include "engine/grammar/action_schema.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "common/json_util.h"

namespace vlmserve {
namespace {

using OJson = nlohmann::ordered_json;

// Printable ASCII without the two bytes JSON would have to escape.
bool PlainByte(unsigned char c) { return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'; }

Status CheckPlain(const std::string& s, const std::string& what, size_t max_bytes, bool allow_empty) {
  if ((!allow_empty && s.empty()) || s.size() > max_bytes) {
    return InvalidArgumentError(what + " must be " + (allow_empty ? "0" : "1") + " to " +
                                std::to_string(max_bytes) + " characters");
  }
  for (unsigned char c : s) {
    if (!PlainByte(c)) {
      return InvalidArgumentError(what + " may hold only printable ASCII without '\"' and '\\'");
    }
  }
  return Status::Ok();
}

std::string ClassText(const std::bitset<256>& chars) {
  std::string s;
  for (int c = 0; c < 256; ++c) {
    if (chars[static_cast<size_t>(c)]) s.push_back(static_cast<char>(c));
  }
  return s;
}

void Canonicalize(ActionSchema* schema) {
  OJson props = OJson::array();
  for (const SchemaProperty& p : schema->properties) {
    const SchemaValue& v = p.value;
    OJson j;
    switch (v.kind) {
      case SchemaValue::Kind::kEnum:
        j = {{"enum", v.values}};
        break;
      case SchemaValue::Kind::kString:
        j = {{"chars", ClassText(v.chars)}, {"min", v.min_length}, {"max", v.max_length}};
        break;
      case SchemaValue::Kind::kInteger:
        j = {{"integer", {v.minimum, v.maximum}}};
        break;
      case SchemaValue::Kind::kBoolean:
        j = {{"boolean", true}};
        break;
    }
    props.push_back({p.name, j});
  }
  schema->canonical = props.dump();
}

SchemaProperty EnumProperty(const char* name, std::vector<std::string> values) {
  SchemaProperty p;
  p.name = name;
  p.value.kind = SchemaValue::Kind::kEnum;
  p.value.values = std::move(values);
  return p;
}

ActionSchema DefaultWithButtons(std::vector<std::string> buttons) {
  ActionSchema s;
  s.properties.push_back(EnumProperty("button", std::move(buttons)));
  SchemaProperty reasoning;
  reasoning.name = "reasoning";
  reasoning.value.kind = SchemaValue::Kind::kString;
  for (char c = 'a'; c <= 'z'; ++c) reasoning.value.chars.set(static_cast<unsigned char>(c));
  for (char c = '0'; c <= '9'; ++c) reasoning.value.chars.set(static_cast<unsigned char>(c));
  reasoning.value.chars.set('_');
  reasoning.value.chars.set(' ');
  reasoning.value.min_length = 1;
  reasoning.value.max_length = 64;
  s.properties.push_back(std::move(reasoning));
  s.properties.push_back(
      EnumProperty("context", std::vector<std::string>(std::begin(kContexts), std::end(kContexts))));
  Canonicalize(&s);
  return s;
}

// "^[CLASS]*$", "^[CLASS]+$", "^[CLASS]{n}$" or "^[CLASS]{m,n}$" → the class and length bounds.
Status ParsePattern(const std::string& pattern, const std::string& where, std::bitset<256>* chars,
                    int64_t* min_len, int64_t* max_len) {
  const Status bad = InvalidArgumentError(
      where + ".pattern must be ^[CLASS]*$, ^[CLASS]+$ or ^[CLASS]{m,n}$ with CLASS of literal "
              "characters and ranges (got \"" +
      pattern.substr(0, 64) + "\")");
  if (pattern.size() < 5 || pattern[0] != '^' || pattern[1] != '[' || pattern.back() != '$') {
    return bad;
  }
  const size_t close = pattern.find(']', 2);
  if (close == std::string::npos || close == 2) return bad;
  const std::string cls = pattern.substr(2, close - 2);
  if (cls[0] == '^') return bad;  // negated classes are not supported
  for (size_t i = 0; i < cls.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(cls[i]);
    if (c == '\\' || c == '[') return bad;
    if (i + 2 < cls.size() && cls[i + 1] == '-') {
      const unsigned char hi = static_cast<unsigned char>(cls[i + 2]);
      if (hi < c || hi == '\\') return bad;
      for (unsigned v = c; v <= hi; ++v) chars->set(v);
      i += 2;
    } else {
      chars->set(c);
    }
  }
  for (int c = 0; c < 256; ++c) {
    if ((*chars)[static_cast<size_t>(c)] && !PlainByte(static_cast<unsigned char>(c))) {
      return InvalidArgumentError(where +
                                  ".pattern: the class may hold only printable ASCII without '\"' "
                                  "and '\\'");
    }
  }
  const std::string rep = pattern.substr(close + 1, pattern.size() - close - 2);
  if (rep == "*") {
    *min_len = 0;
    *max_len = -1;
  } else if (rep == "+") {
    *min_len = 1;
    *max_len = -1;
  } else if (rep.size() >= 3 && rep.front() == '{' && rep.back() == '}') {
    const std::string body = rep.substr(1, rep.size() - 2);
    const size_t comma = body.find(',');
    auto number = [](const std::string& t, int64_t* out) {
      if (t.empty() || t.size() > 6 ||
          !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
      *out = std::stoll(t);
      return true;
    };
    if (comma == std::string::npos) {
      if (!number(body, min_len)) return bad;
      *max_len = *min_len;
    } else if (!number(body.substr(0, comma), min_len) || !number(body.substr(comma + 1), max_len)) {
      return bad;
    }
  } else {
    return bad;
  }
  return Status::Ok();
}

// An integer keyword's value: a JSON integer (or an integral double) within the limit.
Status IntegerKeyword(const OJson& j, const std::string& what, const SchemaLimits& lim,
                      int64_t* out) {
  double d;
  if (j.is_number_integer()) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      d = 1e300;
    } else {
      d = static_cast<double>(j.get<int64_t>());
    }
  } else if (j.is_number_float()) {
    d = j.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) {
      return InvalidArgumentError(what + " must be an integer");
    }
  } else {
    return InvalidArgumentError(what + " must be an integer");
  }
  if (std::fabs(d) > static_cast<double>(lim.max_integer_magnitude)) {
    return InvalidArgumentError(what + " must be within ±" +
                                std::to_string(lim.max_integer_magnitude));
  }
  *out = j.is_number_integer() ? j.get<int64_t>() : static_cast<int64_t>(d);
  return Status::Ok();
}

bool Ignored(const std::string& key) {
  return key == "title" || key == "description" || key == "$schema";
}

StatusOr<SchemaValue> ParseProperty(const OJson& j, const std::string& where,
                                    const SchemaLimits& lim) {
  if (!j.is_object()) return InvalidArgumentError(where + " must be an object");
  std::string type;
  if (auto it = j.find("type"); it != j.end()) {
    if (!it->is_string()) return InvalidArgumentError(where + ".type must be a string");
    type = it->get<std::string>();
  }
  SchemaValue v;
  if (j.contains("enum")) {
    if (!type.empty() && type != "string") {
      return InvalidArgumentError(where + ".enum: only string enums are supported (type \"" +
                                  type + "\")");
    }
    for (const auto& [key, val] : j.items()) {
      if (key != "enum" && key != "type" && !Ignored(key)) {
        return InvalidArgumentError(where + ": keyword \"" + key +
                                    "\" is not supported with enum");
      }
    }
    const OJson& e = j.at("enum");
    if (!e.is_array() || e.empty() || e.size() > lim.max_enum_values) {
      return InvalidArgumentError(where + ".enum must be an array of 1 to " +
                                  std::to_string(lim.max_enum_values) + " strings");
    }
    v.kind = SchemaValue::Kind::kEnum;
    for (const OJson& s : e) {
      if (!s.is_string()) return InvalidArgumentError(where + ".enum must hold strings only");
      std::string value = s.get<std::string>();
      RETURN_IF_ERROR(CheckPlain(value, where + ".enum value", lim.max_enum_value_bytes, false));
      if (std::find(v.values.begin(), v.values.end(), value) != v.values.end()) {
        return InvalidArgumentError(where + ".enum lists \"" + value + "\" twice");
      }
      v.values.push_back(std::move(value));
    }
    return v;
  }
  auto only = [&](std::initializer_list<const char*> allowed) -> Status {
    for (const auto& item : j.items()) {
      const std::string& key = item.key();
      if (Ignored(key)) continue;
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; })) {
        return InvalidArgumentError(where + ": keyword \"" + key + "\" is not supported for type " +
                                    type);
      }
    }
    return Status::Ok();
  };
  if (type == "string") {
    RETURN_IF_ERROR(only({"type", "maxLength", "minLength", "pattern"}));
    v.kind = SchemaValue::Kind::kString;
    int64_t min_len = 0, max_len = -1;
    if (auto it = j.find("pattern"); it != j.end()) {
      if (!it->is_string()) return InvalidArgumentError(where + ".pattern must be a string");
      RETURN_IF_ERROR(ParsePattern(it->get<std::string>(), where, &v.chars, &min_len, &max_len));
    } else {
      for (int c = 0; c < 256; ++c) {
        if (PlainByte(static_cast<unsigned char>(c))) v.chars.set(static_cast<size_t>(c));
      }
    }
    if (auto it = j.find("maxLength"); it != j.end()) {
      int64_t m;
      RETURN_IF_ERROR(IntegerKeyword(*it, where + ".maxLength", lim, &m));
      max_len = max_len < 0 ? m : std::min(max_len, m);
    }
    if (auto it = j.find("minLength"); it != j.end()) {
      int64_t m;
      RETURN_IF_ERROR(IntegerKeyword(*it, where + ".minLength", lim, &m));
      min_len = std::max(min_len, m);
    }
    if (max_len < 0) {
      return InvalidArgumentError(where + ": a string needs maxLength (or a pattern with {m,n})");
    }
    if (max_len > lim.max_string_length) {
      return InvalidArgumentError(where + ".maxLength must be at most " +
                                  std::to_string(lim.max_string_length));
    }
    if (min_len < 0 || min_len > max_len) {
      return InvalidArgumentError(where + ": minLength " + std::to_string(min_len) +
                                  " does not fit maxLength " + std::to_string(max_len));
    }
    v.min_length = min_len;
    v.max_length = max_len;
    return v;
  }
  if (type == "integer") {
    RETURN_IF_ERROR(only({"type", "minimum", "maximum"}));
    if (!j.contains("minimum") || !j.contains("maximum")) {
      return InvalidArgumentError(where + ": an integer needs minimum and maximum");
    }
    v.kind = SchemaValue::Kind::kInteger;
    RETURN_IF_ERROR(IntegerKeyword(j.at("minimum"), where + ".minimum", lim, &v.minimum));
    RETURN_IF_ERROR(IntegerKeyword(j.at("maximum"), where + ".maximum", lim, &v.maximum));
    if (v.minimum > v.maximum) {
      return InvalidArgumentError(where + ": minimum is greater than maximum");
    }
    return v;
  }
  if (type == "boolean") {
    RETURN_IF_ERROR(only({"type"}));
    v.kind = SchemaValue::Kind::kBoolean;
    return v;
  }
  if (type.empty()) return InvalidArgumentError(where + " needs a type (or an enum)");
  return InvalidArgumentError(where + ".type \"" + type.substr(0, 32) +
                              "\" is not supported (string, integer, boolean or an enum)");
}

}  // namespace

ActionSchema DefaultActionSchema() {
  return DefaultWithButtons(std::vector<std::string>(std::begin(kButtons), std::end(kButtons)));
}

StatusOr<ActionSchema> NarrowButtons(const std::vector<std::string>& allowed) {
  if (allowed.empty()) return InvalidArgumentError("allowed_buttons is empty");
  for (const std::string& b : allowed) {
    if (std::none_of(std::begin(kButtons), std::end(kButtons),
                     [&](const char* k) { return b == k; })) {
      std::string names;
      for (const char* k : kButtons) names += std::string(names.empty() ? "" : ", ") + k;
      return InvalidArgumentError("allowed_buttons: \"" + b.substr(0, 32) +
                                  "\" is not a button (" + names + ")");
    }
  }
  std::vector<std::string> buttons;
  for (const char* k : kButtons) {
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) buttons.emplace_back(k);
  }
  return DefaultWithButtons(std::move(buttons));
}

StatusOr<ActionSchema> ParseActionSchema(std::string_view text, const SchemaLimits& lim) {
  if (text.size() > lim.max_text_bytes) {
    return InvalidArgumentError("action_schema is " + std::to_string(text.size()) +
                                " bytes, over the limit of " + std::to_string(lim.max_text_bytes));
  }
  RETURN_IF_ERROR(CheckJsonDepth(text, 8).WithPrefix("action_schema"));
  OJson j = OJson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError("action_schema is not valid JSON");
  if (!j.is_object()) return InvalidArgumentError("action_schema must be a JSON object");
  for (const auto& [key, val] : j.items()) {
    if (key != "type" && key != "properties" && key != "required" &&
        key != "additionalProperties" && !Ignored(key)) {
      return InvalidArgumentError("action_schema: keyword \"" + key.substr(0, 32) +
                                  "\" is not supported");
    }
  }
  if (!j.contains("type") || j["type"] != "object") {
    return InvalidArgumentError("action_schema.type must be \"object\"");
  }
  if (auto it = j.find("additionalProperties"); it != j.end() && *it != false) {
    return InvalidArgumentError("action_schema.additionalProperties must be false");
  }
  const auto props = j.find("properties");
  if (props == j.end() || !props->is_object() || props->empty() ||
      props->size() > lim.max_properties) {
    return InvalidArgumentError("action_schema.properties must be an object of 1 to " +
                                std::to_string(lim.max_properties) + " properties");
  }
  ActionSchema schema;
  for (const auto& [name, prop] : props->items()) {
    RETURN_IF_ERROR(CheckPlain(name, "action_schema: a property name", lim.max_name_bytes, false));
    ASSIGN_OR_RETURN(SchemaValue v, ParseProperty(prop, "action_schema.properties." + name, lim));
    schema.properties.push_back({name, std::move(v)});
  }
  if (auto it = j.find("required"); it != j.end()) {
    if (!it->is_array()) return InvalidArgumentError("action_schema.required must be an array");
    std::vector<std::string> names;
    for (const OJson& n : *it) {
      if (!n.is_string()) return InvalidArgumentError("action_schema.required must hold strings");
      names.push_back(n.get<std::string>());
    }
    for (const std::string& n : names) {
      if (std::none_of(schema.properties.begin(), schema.properties.end(),
                       [&](const SchemaProperty& p) { return p.name == n; })) {
        return InvalidArgumentError("action_schema.required names \"" + n.substr(0, 64) +
                                    "\", which is not a property");
      }
    }
    for (const SchemaProperty& p : schema.properties) {
      if (std::find(names.begin(), names.end(), p.name) == names.end()) {
        return InvalidArgumentError("action_schema.required must list every property (\"" +
                                    p.name + "\" is missing): every property is always written");
      }
    }
  }
  Canonicalize(&schema);
  return schema;
}

}  // namespace vlmserve
