// The JSON log formatter (see json_log.h).
#include "server/json_log.h"

#include <spdlog/details/log_msg.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

namespace vlmserve {

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  const std::string text(msg.payload.data(), msg.payload.size());
  nlohmann::ordered_json line;
  const auto t = std::chrono::system_clock::to_time_t(msg.time);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      msg.time.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[96];
  std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(ms));
  line["ts"] = ts;
  const auto level = spdlog::level::to_string_view(msg.level);
  line["level"] = std::string(level.data(), level.size());
  auto parsed = !text.empty() && text[0] == '{'
                    ? nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false)
                    : nlohmann::ordered_json();
  if (parsed.is_object()) {
    for (auto& [k, v] : parsed.items()) line[k] = v;
  } else {
    line["msg"] = text;
  }
  const std::string out =
      line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  dest.append(out.data(), out.data() + out.size());
}

}  // namespace vlmserve
