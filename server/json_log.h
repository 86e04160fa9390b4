// --log-format json: every log line is one JSON object {"ts", "level", ...}. A message that is
// itself a JSON object (the per-request line) is merged into it; any other message becomes "msg".
// Control bytes and invalid UTF-8 come out escaped or replaced, so each line always parses.
#pragma once

#include <spdlog/formatter.h>

#include <memory>

namespace vlmserve {

class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLogFormatter>();
  }
};

}  // namespace vlmserve
