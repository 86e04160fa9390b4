// Where tests find their data: the committed fixtures (tests/fixtures) and the shared Gemma 3
// reference files (../shared/gemma3 beside the checkout, or $VLMSERVE_SHARED_DIR/gemma3).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace vlmserve::testing {

// The checkout: $VLMSERVE_SOURCE_DIR when set (a test binary built here and run elsewhere, e.g.
// on the GPU machine by scripts/gpu/check.sh), else where tests/CMakeLists.txt configured it.
inline std::string SourceDir() {
  if (const char* env = std::getenv("VLMSERVE_SOURCE_DIR"); env && *env) return env;
  return VLMSERVE_SOURCE_DIR;
}

inline std::string FixturePath(const std::string& rel) {
  return SourceDir() + "/tests/fixtures/" + rel;
}

// "" when the shared folder is absent (tests that need it then skip, saying so).
inline std::string SharedGemma3Dir() {
  std::string dir;
  if (const char* env = std::getenv("VLMSERVE_SHARED_DIR"); env && *env) {
    dir = std::string(env) + "/gemma3";
  } else {
    dir = SourceDir() + "/../shared/gemma3";
  }
  return std::filesystem::is_directory(dir) ? dir : "";
}

}  // namespace vlmserve::testing
