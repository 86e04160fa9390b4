// Fuzz target: config.json parsing and the size arithmetic run on whatever it accepts.
// Built with libFuzzer under clang (VLMSERVE_FUZZ=ON) and, in every build, linked with
// fuzz_replay_main.cc to replay tests/fuzz/corpus/config as an ordinary test.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/weights/config_json.h"
#include "model/weights/model_stats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = vlmserve::ParseGemma3Config(text, "fuzz");
  if (config.ok()) {
    (void)vlmserve::EstimateMemory(*config);
    (void)vlmserve::KvCacheBytes(*config, uint64_t{1} << 24);
  }
  return 0;
}
