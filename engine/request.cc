// The best-effort action parse (see request.h).
#include "engine/request.h"

#include <nlohmann/json.hpp>

namespace vlmserve {

void ParseActionText(const std::string& text, ParsedAction* action) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) continue;
    const std::string v = value.get<std::string>();
    if (key == "button")
      action->button = v;
    else if (key == "reasoning")
      action->reasoning = v;
    else if (key == "context")
      action->context = v;
    else
      action->fields[key] = v;
  }
}

}  // namespace vlmserve
