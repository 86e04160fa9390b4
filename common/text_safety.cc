// Escaping for logs and status messages (see text_safety.h).
#include "common/text_safety.h"

#include <cstdio>

#include "common/utf8.h"

namespace vlmserve {
namespace {

void AppendHex(std::string& out, unsigned char c) {
  char buf[5];
  std::snprintf(buf, sizeof(buf), "\\x%02X", c);
  out += buf;
}

}  // namespace

std::string EscapeForLog(std::string_view s, size_t max_bytes) {
  std::string out;
  const std::string_view shown = s.substr(0, max_bytes);
  out.reserve(shown.size() + 16);
  for (char ch : shown) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      AppendHex(out, c);
    }
  }
  if (s.size() > max_bytes) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string SanitizeForClient(std::string_view s, size_t max_bytes) {
  static constexpr std::string_view kEllipsis = "...";
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  const size_t budget = max_bytes > kEllipsis.size() ? max_bytes - kEllipsis.size() : 0;
  std::string out;
  size_t cut = std::string::npos;  // the last piece boundary within `budget`
  size_t i = 0;
  while (i < s.size()) {
    std::string piece;
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 1;
    if (c < 0x20 || c == 0x7f) {
      AppendHex(piece, c);
    } else if (c < 0x80) {
      piece = s[i];
    } else if (size_t n = Utf8CharLength(s, i); n > 0) {
      piece = s.substr(i, n);
      len = n;
    } else {
      piece = kReplacement;  // one per invalid byte, as Python's errors="replace" does
    }
    if (cut == std::string::npos && out.size() + piece.size() > budget) cut = out.size();
    out += piece;
    if (out.size() > max_bytes) {  // too long: whole pieces up to the budget, then "..."
      out.resize(cut);
      out += kEllipsis;
      return out;
    }
    i += len;
  }
  return out;
}

}  // namespace vlmserve
