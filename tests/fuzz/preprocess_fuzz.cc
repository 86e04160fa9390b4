// Fuzz target: the whole frame path — decode (PNG or JPEG, small limits), then preprocessing with
// pan & scan at a small size — on arbitrary bytes. Output sizes must be consistent.
#include <cstdlib>

#include "model/image/image.h"
#include "model/image/preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vlmserve::ImageLimits lim;
  lim.max_side = 1024;
  lim.max_pixels = 1 << 18;
  auto img = vlmserve::DecodeImage({data, size}, lim, "fuzz");
  if (!img.ok()) return 0;
  vlmserve::PreprocessOptions opt;
  opt.size = 14;
  opt.pan_and_scan = true;
  opt.pan_and_scan_params.min_crop_size = 4;  // so small images get crops too
  auto pv = vlmserve::PreprocessImage(*img, opt);
  if (!pv.ok() || pv->num_images() != static_cast<size_t>(1 + pv->num_crops)) std::abort();
  for (float v : pv->values)
    if (!(v >= -1.0f && v <= 1.0f)) std::abort();
  return 0;
}
