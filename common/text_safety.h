// Text that came from a client (ids, prompts, bytes inside library error messages) made safe for
// the two places it is echoed: log lines, where control bytes could forge lines or move the
// terminal, and gRPC status messages, which clients decode as UTF-8 and which must stay small.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vlmserve {

// Printable ASCII kept as is; `\` → `\\`; every other byte (controls, DEL, bytes ≥ 0x80) → `\xNN`.
// At most `max_bytes` of input are shown; longer input ends in "...(N bytes)".
std::string EscapeForLog(std::string_view s, size_t max_bytes = 128);

// Valid UTF-8 without control characters: invalid sequences become U+FFFD, C0
// controls and DEL become `\xNN`, and the result is cut at a character boundary to at most
// `max_bytes` bytes (ending in "..." when cut). Status messages go through this on their way out.
std::string SanitizeForClient(std::string_view s, size_t max_bytes = 1024);

}  // namespace vlmserve
