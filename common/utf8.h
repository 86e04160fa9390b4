// UTF-8 helpers for untrusted text: strict validation (no overlongs, no surrogates, nothing above
// U+10FFFF — what Python and Rust accept as str) and character lengths.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vlmserve {

// Length of the UTF-8 sequence starting at s[i] if it is a valid character there, else 0.
size_t Utf8CharLength(std::string_view s, size_t i);

// The offset of the first byte that is not part of a valid UTF-8 character, or npos if all valid.
size_t FindInvalidUtf8(std::string_view s);

inline bool IsValidUtf8(std::string_view s) { return FindInvalidUtf8(s) == std::string_view::npos; }

}  // namespace vlmserve
