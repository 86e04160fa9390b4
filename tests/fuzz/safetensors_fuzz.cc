// Fuzz target: the safetensors header parser and validator on arbitrary bytes (a whole "file").
// Accepted headers are walked once more so that every offset it reports is checked to lie inside
// the input (an out-of-bounds span would be an ASan report here).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "model/weights/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  auto header = vlmserve::ParseSafetensors(bytes, "fuzz.safetensors");
  if (!header.ok()) return 0;
  uint64_t sum = 0;
  for (const vlmserve::TensorEntry& t : header->tensors) {
    if (header->data_offset + t.end > size) std::abort();  // the validator promised otherwise
    auto d = bytes.subspan(header->data_offset + t.begin, t.nbytes());
    if (!d.empty()) sum += d.front() + d.back();
  }
  return static_cast<int>(sum & 0);
}
