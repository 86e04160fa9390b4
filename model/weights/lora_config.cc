// adapter_config.json parsing and PEFT's targeting rules (see lora_config.h).
#include "model/weights/lora_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/json_util.h"

namespace vlmserve {
namespace {

using ojson = nlohmann::ordered_json;  // rank_pattern / alpha_pattern: file order matters

// Patterns come from an untrusted file. libstdc++'s default executor backtracks, so "(.*)*x"
// would take exponential time on a 60-character module name; its polynomial (Thompson NFA)
// executor cannot, and refuses back-references instead.
#ifdef __GLIBCXX__
constexpr std::regex::flag_type kRegexFlags =
    std::regex::ECMAScript | std::regex_constants::__polynomial;
#else
constexpr std::regex::flag_type kRegexFlags = std::regex::ECMAScript;
#endif

// Options that change what a LoRA layer computes (or add tensors we do not merge). Set to a
// truthy value, they make the adapter UNIMPLEMENTED rather than silently served wrong.
constexpr const char* kRefusedWhenSet[] = {
    "use_dora",          "lora_bias",
    "fan_in_fan_out",    "target_parameters",
    "layer_replication", "trainable_token_indices",
    "use_qalora",        "alora_invocation_tokens",
    "arrow_config",      "use_bdlora",
    "kasa_config",       "velora_config",
    "monteclora_config", "modules_to_tie",
};

bool Truthy(const ojson& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return true;
}

StatusOr<std::vector<std::string>> StringList(const ojson& v, const std::string& what,
                                              const LoraConfigLimits& limits) {
  if (!v.is_array()) return InvalidArgumentError(what + " must be a list of strings");
  if (v.size() > limits.max_patterns) return InvalidArgumentError(what + " has too many entries");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string() || e.get<std::string>().empty() ||
        e.get<std::string>().size() > limits.max_regex_bytes) {
      return InvalidArgumentError(what + " must hold non-empty strings");
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

StatusOr<std::shared_ptr<const std::regex>> Compile(const std::string& pattern,
                                                    const std::string& what) {
  if (pattern.find("(?P") != std::string::npos) {
    return InvalidArgumentError(what +
                                ": Python named groups (?P...) are not supported; use (...)");
  }
  try {
    return std::make_shared<const std::regex>(pattern, kRegexFlags);
  } catch (const std::regex_error& e) {
    return InvalidArgumentError(what + ": \"" + pattern +
                                "\" is not a regular expression: " + e.what());
  }
}

// Regex matching never throws out of here: an over-complex match counts as no match (patterns
// and module names are both short; this is a guard, not a path).
bool FullMatch(const std::regex& re, const std::string& s) {
  try {
    return std::regex_match(s, re);
  } catch (const std::regex_error&) {
    return false;
  }
}

StatusOr<ModuleMatcher> MatcherFrom(const ojson& v, const std::string& what,
                                    const LoraConfigLimits& limits) {
  if (v.is_null()) return ModuleMatcher();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s.size() > limits.max_regex_bytes) return InvalidArgumentError(what + " is too long");
    std::string lower = s;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower == "all-linear") return ModuleMatcher::AllLinear();
    return ModuleMatcher::Regex(s, what);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> names, StringList(v, what, limits));
  return ModuleMatcher::List(std::move(names));
}

}  // namespace

StatusOr<ModuleMatcher> ModuleMatcher::List(std::vector<std::string> names) {
  ModuleMatcher m;
  m.kind_ = Kind::kList;
  m.names_ = std::move(names);
  return m;
}

StatusOr<ModuleMatcher> ModuleMatcher::Regex(const std::string& pattern, const std::string& what) {
  ModuleMatcher m;
  m.kind_ = Kind::kRegex;
  m.pattern_ = pattern;
  ASSIGN_OR_RETURN(m.regex_, Compile(pattern, what));
  return m;
}

ModuleMatcher ModuleMatcher::AllLinear() {
  ModuleMatcher m;
  m.kind_ = Kind::kAllLinear;
  return m;
}

bool ModuleMatcher::Matches(const std::string& module) const {
  switch (kind_) {
    case Kind::kNone:
      return false;
    case Kind::kAllLinear:
      return true;
    case Kind::kRegex:
      return FullMatch(*regex_, module);
    case Kind::kList:
      for (const std::string& n : names_) {
        if (module == n) return true;
        if (module.size() > n.size() &&
            module.compare(module.size() - n.size(), n.size(), n) == 0 &&
            module[module.size() - n.size() - 1] == '.') {
          return true;
        }
      }
      return false;
  }
  return false;
}

std::string ModuleMatcher::Describe() const {
  switch (kind_) {
    case Kind::kNone:
      return "none";
    case Kind::kAllLinear:
      return "all-linear";
    case Kind::kRegex:
      return "regex \"" + pattern_ + "\"";
    case Kind::kList: {
      std::string s = "[";
      for (size_t i = 0; i < names_.size(); ++i) s += (i ? ", \"" : "\"") + names_[i] + "\"";
      return s + "]";
    }
  }
  return "?";
}

bool LoraConfig::Targets(const std::string& module) const {
  if (exclude_modules.Matches(module)) return false;
  for (const auto& re : save_regex_) {
    if (FullMatch(*re, module)) return false;  // modules_to_save are copied, never adapted
  }
  if (target_modules.kind() != ModuleMatcher::Kind::kList) return target_modules.Matches(module);
  for (const std::string& n : target_modules.names()) {
    if (module == n) return true;  // named in full: no layer filter (as PEFT)
  }
  if (!target_modules.Matches(module)) return false;
  if (!layers_to_transform || layers_to_transform->empty()) return true;
  // The layer index: the first "<segment>.<n>." (or "<pattern>.<n>.") in the name.
  std::smatch m;
  bool found = false;
  try {
    if (layer_regex_.empty()) {
      found = std::regex_search(module, m, *layer_regex_default_,
                                std::regex_constants::match_continuous);
    } else {
      for (const std::regex& re : layer_regex_) {
        if (std::regex_search(module, m, re, std::regex_constants::match_continuous)) {
          found = true;
          break;
        }
      }
    }
  } catch (const std::regex_error&) {
    return false;
  }
  if (!found) return false;
  const int64_t index = std::stoll(m[1].str().substr(0, 18));
  for (int64_t l : *layers_to_transform) {
    if (l == index) return true;
  }
  return false;
}

int64_t LoraConfig::RankFor(const std::string& module) const {
  for (size_t i = 0; i < rank_pattern.size(); ++i) {
    if (FullMatch(*rank_regex_[i], module)) return rank_pattern[i].second;
  }
  return r;
}

double LoraConfig::AlphaFor(const std::string& module) const {
  for (size_t i = 0; i < alpha_pattern.size(); ++i) {
    if (FullMatch(*alpha_regex_[i], module)) return alpha_pattern[i].second;
  }
  return lora_alpha;
}

double LoraConfig::ScaleFor(const std::string& module) const {
  const double rank = static_cast<double>(RankFor(module));
  return AlphaFor(module) / (use_rslora ? std::sqrt(rank) : rank);
}

StatusOr<LoraConfig> ParseLoraConfig(const std::string& text, const std::string& source,
                                     const LoraConfigLimits& limits) {
  RETURN_IF_ERROR(CheckJsonDepth(text, limits.max_json_depth).WithPrefix(source));
  ojson j = ojson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return InvalidArgumentError(source + ": not valid JSON (a Python NaN or Infinity is not JSON)");
  }
  if (!j.is_object()) return InvalidArgumentError(source + ": must be a JSON object");
  LoraConfig c;
  c.source = source;
  auto field = [&](const char* name) -> const ojson* {
    auto it = j.find(name);
    return it == j.end() ? nullptr : &*it;
  };
  auto err = [&](const std::string& what) { return InvalidArgumentError(source + ": " + what); };
  auto unimpl = [&](const std::string& what) { return UnimplementedError(source + ": " + what); };

  // What kind of adapter.
  const ojson* type = field("peft_type");
  if (!type || !type->is_string()) return err("peft_type is missing (is this a PEFT adapter?)");
  if (type->get<std::string>() != "LORA") {
    return unimpl("peft_type " + type->get<std::string>() + ": only LoRA adapters are served");
  }
  for (const char* name : kRefusedWhenSet) {
    if (const ojson* v = field(name); v && Truthy(*v)) {
      return unimpl(std::string(name) + " = " + v->dump() +
                    " is not supported (only plain LoRA: W + scale * B * A is merged)");
    }
  }
  if (const ojson* b = field("bias"); b && !b->is_null()) {
    if (!b->is_string()) return err("bias must be a string");
    if (b->get<std::string>() != "none") {
      return unimpl("bias \"" + b->get<std::string>() +
                    "\": adapters that train biases are not supported (bias \"none\" only)");
    }
  }

  // Rank and scale.
  // PEFT's defaults (r = 8, lora_alpha = 8) when absent, as PEFT itself would load the file.
  c.r = 8;
  if (const ojson* r = field("r"); r && !r->is_null()) {
    if (!r->is_number_integer())
      return err("r (the LoRA rank) must be an integer, got " + r->dump());
    c.r = r->get<int64_t>();
  }
  if (c.r < 1 || c.r > limits.max_rank) {
    return err("r = " + std::to_string(c.r) + " is out of range [1, " +
               std::to_string(limits.max_rank) + "]");
  }
  c.lora_alpha = 8;
  if (const ojson* alpha = field("lora_alpha"); alpha && !alpha->is_null()) {
    if (!alpha->is_number() || !std::isfinite(alpha->get<double>()) || alpha->get<double>() <= 0) {
      return err("lora_alpha must be a finite positive number, got " + alpha->dump());
    }
    c.lora_alpha = alpha->get<double>();
  }
  if (const ojson* v = field("use_rslora"); v && !v->is_null()) {
    if (!v->is_boolean()) return err("use_rslora must be true or false");
    c.use_rslora = v->get<bool>();
  }
  for (const char* which : {"rank_pattern", "alpha_pattern"}) {
    const ojson* p = field(which);
    if (!p || p->is_null()) continue;
    if (!p->is_object()) return err(std::string(which) + " must be an object");
    if (p->size() > limits.max_patterns) return err(std::string(which) + " has too many entries");
    for (const auto& [key, value] : p->items()) {
      const std::string what = source + ": " + which + " \"" + key + "\"";
      if (key.empty() || key.size() > limits.max_regex_bytes) {
        return InvalidArgumentError(what + ": bad key");
      }
      ASSIGN_OR_RETURN(auto re, Compile("(.*\\.)?(" + key + ")", what));
      if (std::string(which) == "rank_pattern") {
        if (!value.is_number_integer() || value.get<int64_t>() < 1 ||
            value.get<int64_t>() > limits.max_rank) {
          return InvalidArgumentError(what + ": the rank must be an integer in [1, " +
                                      std::to_string(limits.max_rank) + "], got " + value.dump());
        }
        c.rank_pattern.emplace_back(key, value.get<int64_t>());
        c.rank_regex_.push_back(std::move(re));
      } else {
        if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() <= 0) {
          return InvalidArgumentError(what + ": alpha must be a finite positive number, got " +
                                      value.dump());
        }
        c.alpha_pattern.emplace_back(key, value.get<double>());
        c.alpha_regex_.push_back(std::move(re));
      }
    }
  }

  // Which modules.
  const ojson* targets = field("target_modules");
  if (!targets || targets->is_null()) {
    return err("target_modules is missing (PEFT's per-architecture defaults are not guessed)");
  }
  ASSIGN_OR_RETURN(c.target_modules, MatcherFrom(*targets, source + ": target_modules", limits));
  if (c.target_modules.kind() == ModuleMatcher::Kind::kList && c.target_modules.names().empty()) {
    return err("target_modules is empty");
  }
  if (const ojson* v = field("exclude_modules"); v) {
    ASSIGN_OR_RETURN(c.exclude_modules, MatcherFrom(*v, source + ": exclude_modules", limits));
    if (c.exclude_modules.kind() == ModuleMatcher::Kind::kAllLinear) {
      return err("exclude_modules \"all-linear\" would exclude everything");
    }
  }
  if (const ojson* v = field("modules_to_save"); v && !v->is_null()) {
    ASSIGN_OR_RETURN(c.modules_to_save, StringList(*v, source + ": modules_to_save", limits));
    for (const std::string& m : c.modules_to_save) {
      ASSIGN_OR_RETURN(auto re, Compile("(^|.*\\.)" + m + "($|\\..*)",
                                        source + ": modules_to_save \"" + m + "\""));
      c.save_regex_.push_back(std::move(re));
    }
  }
  if (const ojson* v = field("layers_to_transform"); v && !v->is_null()) {
    std::vector<int64_t> layers;
    if (v->is_number_integer()) {
      layers.push_back(v->get<int64_t>());
    } else if (v->is_array() && v->size() <= limits.max_patterns) {
      for (const auto& e : *v) {
        if (!e.is_number_integer()) return err("layers_to_transform must hold integers");
        layers.push_back(e.get<int64_t>());
      }
    } else {
      return err("layers_to_transform must be an integer or a list of integers");
    }
    if (!layers.empty() && c.target_modules.kind() != ModuleMatcher::Kind::kList) {
      return err("layers_to_transform needs target_modules as a list (PEFT refuses it otherwise)");
    }
    c.layers_to_transform = std::move(layers);
  }
  if (const ojson* v = field("layers_pattern"); v && !v->is_null()) {
    if (v->is_string()) {
      if (!v->get<std::string>().empty()) c.layers_pattern.push_back(v->get<std::string>());
    } else {
      ASSIGN_OR_RETURN(c.layers_pattern, StringList(*v, source + ": layers_pattern", limits));
    }
    if (!c.layers_pattern.empty() && !c.layers_to_transform) {
      return err("layers_pattern is set without layers_to_transform");
    }
  }
  try {
    c.layer_regex_default_.emplace("^.*?\\.[^.]*\\.(\\d+)\\.", std::regex::ECMAScript);
    for (const std::string& p : c.layers_pattern) {
      c.layer_regex_.emplace_back("(?:^|.*?\\.)" + p + "\\.(\\d+)\\.", kRegexFlags);
    }
  } catch (const std::regex_error& e) {
    return err(std::string("layers_pattern is not a regular expression: ") + e.what());
  }

  // Informational.
  for (auto [name, out] :
       {std::pair<const char*, std::string*>{"base_model_name_or_path", &c.base_model_name_or_path},
        {"peft_version", &c.peft_version},
        {"task_type", &c.task_type}}) {
    if (const ojson* v = field(name); v && v->is_string())
      *out = v->get<std::string>().substr(0, 512);
  }
  return c;
}

}  // namespace vlmserve
