// Bounded JSON reading (see json_util.h).
#include "common/json_util.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace vlmserve {

StatusOr<std::string> ReadFileBounded(const std::string& path, uint64_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFoundError(path + ": no such file");
    return InvalidArgumentError(path + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return InvalidArgumentError(path + ": file is " + std::to_string(st.st_size) +
                                " bytes, over the limit of " + std::to_string(max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgumentError(path + ": cannot open: " + std::strerror(errno));
  // Read at most max_bytes + 1 so a file that grew after stat() is still caught.
  std::string data(static_cast<size_t>(st.st_size), '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  if (in.peek() != std::char_traits<char>::eof()) {
    return InvalidArgumentError(path + ": file changed while reading (grew past its size)");
  }
  return data;
}

Status CheckJsonDepth(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return InvalidArgumentError("JSON nested deeper than " + std::to_string(max_depth) +
                                    " levels (at byte " + std::to_string(i) + ")");
      }
    } else if (c == ']' || c == '}') {
      --depth;  // imbalance is reported by the parser
    }
  }
  return Status::Ok();
}

StatusOr<nlohmann::json> ParseJsonBounded(std::string_view text, int max_depth,
                                          const std::string& source) {
  if (Status s = CheckJsonDepth(text, max_depth); !s.ok()) return s.WithPrefix(source);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 3: ...".
    return InvalidArgumentError(source + ": invalid JSON: " + e.what());
  }
}

}  // namespace vlmserve
