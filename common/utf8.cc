// Strict UTF-8 validation (see utf8.h), following the Unicode well-formed byte sequence table.
#include "common/utf8.h"

namespace vlmserve {

size_t Utf8CharLength(std::string_view s, size_t i) {
  const size_t n = s.size();
  if (i >= n) return 0;
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  if (c < 0x80) return 1;
  auto cont = [&](size_t k) { return k < n && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (i + 1 >= n) return 0;
    const uint8_t c1 = b(i + 1);
    const bool ok1 = c == 0xE0 ? (c1 >= 0xA0 && c1 <= 0xBF)    // no overlongs
                     : c == 0xED ? (c1 >= 0x80 && c1 <= 0x9F)  // no surrogates
                                 : (c1 & 0xC0) == 0x80;
    return ok1 && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (i + 1 >= n) return 0;
    const uint8_t c1 = b(i + 1);
    const bool ok1 = c == 0xF0 ? (c1 >= 0x90 && c1 <= 0xBF)    // no overlongs
                     : c == 0xF4 ? (c1 >= 0x80 && c1 <= 0x8F)  // ≤ U+10FFFF
                                 : (c1 & 0xC0) == 0x80;
    return ok1 && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;  // continuation byte, C0/C1 overlong lead, or F5..FF
}

size_t FindInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t w = 0;
      for (int k = 0; k < 8; ++k) w |= static_cast<uint64_t>(static_cast<uint8_t>(s[i + k])) << (8 * k);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const size_t len = Utf8CharLength(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

}  // namespace vlmserve
