// Fuzz target: loading tokenizer.json from arbitrary bytes (it is untrusted model input). Whatever
// loads must then encode and decode without crashing.
#include <cstddef>
#include <cstdint>

#include "model/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tok = vlmserve::Tokenizer::FromJson(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
  if (!tok.ok()) return 0;
  auto ids = (*tok)->Encode("Hello <start_of_turn>world\n\n\t日本 \x01");
  if (ids.ok()) (void)(*tok)->Decode(*ids, false);
  return 0;
}
