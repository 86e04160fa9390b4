// Fuzz target: raw RGB frames — the first 8 bytes are width and height (little-endian uint32),
// the rest is pixel data — and format sniffing of the same bytes.
#include <cstdlib>
#include <cstring>

#include "model/image/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint32_t w, h;
  std::memcpy(&w, data, 4);
  std::memcpy(&h, data + 4, 4);
  w %= 4096;  // mostly plausible sizes, still hitting every branch
  h %= 4096;
  auto img =
      vlmserve::RawRgbImage(w, h, {data + 8, size - 8}, vlmserve::kDefaultImageLimits, "fuzz");
  if (img.ok() && img->rgb.size() != size - 8) std::abort();
  (void)vlmserve::SniffImageFormat({data, size});
  return 0;
}
