// adapter_config.json of a PEFT LoRA adapter, parsed as untrusted input, and PEFT's rules for which
// modules it targets and with what rank and scale (peft 0.21:
// tuners_utils.check_target_module_exists, utils/other.get_pattern_key, lora/layer.update_layer). A
// module is named as in the model the adapter was trained on, e.g.
// "model.language_model.layers.3.self_attn.q_proj".
//
//   target_modules  a list: a name equal to an entry or ending in "." + entry (so "q_proj" also
//                   hits the vision tower's q_proj); a string: a regex the whole name must match;
//                   "all-linear": every linear layer but the output head.
//   exclude_modules the same forms, applied first. modules_to_save are never targeted.
//   layers_to_transform / layers_pattern  only with a list: the layer index taken from the first
//                   "<pattern>.<n>." in the name (any segment when no pattern) must be listed.
//   rank_pattern / alpha_pattern  the first key (file order) that matches the name's tail as a
//                   regex, "(.*\.)?(key)", overrides r / lora_alpha.
//   scale           lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
//
// Options that change the math beyond W + scale·B·A (DoRA, LoRA biases, fan_in_fan_out, aLoRA, ...)
// are refused with UNIMPLEMENTED naming the option, never silently ignored. Regexes run with
// std::regex (ECMAScript): the Python-only syntax PEFT users write in practice — (?:…), classes,
// alternation, lazy quantifiers — is the same; (?P<name>…) is refused with a clear error. They
// run on libstdc++'s polynomial-time executor: a pattern from a hostile file cannot backtrack
// exponentially (back-references, which need backtracking, are refused).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "common/status.h"

namespace vlmserve {

struct LoraConfigLimits {
  uint64_t max_file_bytes = 1u << 20;
  int max_json_depth = 6;
  int64_t max_rank = 4096;
  size_t max_patterns = 4096;  // entries of target/exclude lists and rank/alpha patterns
  size_t max_regex_bytes = 4096;
};
inline constexpr LoraConfigLimits kLoraConfigLimits{};

// A module-name matcher in one of PEFT's forms.
class ModuleMatcher {
 public:
  enum class Kind { kNone, kList, kRegex, kAllLinear };
  Kind kind() const { return kind_; }
  // PEFT's semantics for the form; all-linear matches everything (the caller offers only linear
  // layers and drops the output head).
  bool Matches(const std::string& module) const;
  // For messages: ["q_proj", "v_proj"], the regex, or "all-linear".
  std::string Describe() const;
  const std::vector<std::string>& names() const { return names_; }

  static StatusOr<ModuleMatcher> List(std::vector<std::string> names);
  static StatusOr<ModuleMatcher> Regex(const std::string& pattern, const std::string& what);
  static ModuleMatcher AllLinear();

 private:
  Kind kind_ = Kind::kNone;
  std::vector<std::string> names_;
  std::string pattern_;
  std::shared_ptr<const std::regex> regex_;
};

struct LoraConfig {
  std::string source;  // the file, for messages
  int64_t r = 0;
  double lora_alpha = 0;
  bool use_rslora = false;
  ModuleMatcher target_modules, exclude_modules;
  std::optional<std::vector<int64_t>> layers_to_transform;  // absent or empty = every layer
  std::vector<std::string> layers_pattern;
  std::vector<std::string> modules_to_save;
  // In file order: PEFT takes the first key that matches.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::string base_model_name_or_path, peft_version, task_type;

  // PEFT's check_target_module_exists for a candidate module name.
  bool Targets(const std::string& module) const;
  int64_t RankFor(const std::string& module) const;
  double AlphaFor(const std::string& module) const;
  double ScaleFor(const std::string& module) const;  // alpha / r or alpha / sqrt(r)

 private:
  friend StatusOr<LoraConfig> ParseLoraConfig(const std::string&, const std::string&,
                                              const LoraConfigLimits&);
  std::vector<std::shared_ptr<const std::regex>> rank_regex_, alpha_regex_, save_regex_;
  std::optional<std::regex> layer_regex_default_;
  std::vector<std::regex> layer_regex_;
};

// Parses adapter_config.json's text. INVALID_ARGUMENT for malformed or out-of-range values,
// UNIMPLEMENTED for valid PEFT options we do not serve; every message starts with `source`.
StatusOr<LoraConfig> ParseLoraConfig(const std::string& text, const std::string& source,
                                     const LoraConfigLimits& limits = kLoraConfigLimits);

}  // namespace vlmserve
