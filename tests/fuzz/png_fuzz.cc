// Fuzz target: PNG decoding of arbitrary bytes (with the PNG signature forced on half of the
// inputs, so libpng sees most of them). Decoded images must have consistent sizes.
#include <cstdlib>
#include <cstring>
#include <string>

#include "model/image/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vlmserve::ImageLimits lim;
  lim.max_side = 2048;  // keep single runs fast; the limits themselves are tested elsewhere
  lim.max_pixels = 1 << 20;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  if (size > 0 && (data[0] & 1))
    bytes.replace(0, std::min<size_t>(8, size), "\x89PNG\r\n\x1a\n", 8);
  auto img = vlmserve::DecodePng({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                                 lim, "fuzz");
  if (img.ok() && img->rgb.size() != size_t{img->width} * img->height * 3) std::abort();
  return 0;
}
