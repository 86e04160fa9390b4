// Fuzz target: JPEG decoding of arbitrary bytes. Decoded images must have consistent sizes.
#include <cstdlib>

#include "model/image/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vlmserve::ImageLimits lim;
  lim.max_side = 2048;  // keep single runs fast; the limits themselves are tested elsewhere
  lim.max_pixels = 1 << 20;
  auto img = vlmserve::DecodeJpeg({data, size}, lim, "fuzz");
  if (img.ok() && img->rgb.size() != size_t{img->width} * img->height * 3) std::abort();
  return 0;
}
