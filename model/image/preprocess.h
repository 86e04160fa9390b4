// Gemma 3 image preprocessing, bit-exact to transformers' Gemma3ImageProcessorPil (spec §2):
//   frames → 2×2 grid → [pan & scan crops] → Pillow BILINEAR resize to size × size (aspect ratio
//   ignored) → u8 → float32 through a 256-entry table → CHW, RGB.
//
// The resize is Pillow's Resample.c arithmetic (spec §2.2): per output pixel, a triangle filter
// widened by the scale factor when downscaling, taps renormalised and quantised to 22-bit fixed
// point, accumulation from a rounding bias of 2^21, an arithmetic shift and a clip to 0..255;
// horizontal pass first (over the source rows the vertical pass needs), uint8 between passes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "model/image/image.h"

namespace vlmserve {

struct PanAndScanParams {
  uint32_t min_crop_size = 256;  // the processor defaults (spec §2.5)
  uint32_t max_num_crops = 4;
  double min_ratio_to_activate = 1.2;
};

struct CropBox {
  uint32_t x = 0, y = 0, width = 0, height = 0;
  bool operator==(const CropBox&) const = default;
};

// Frames of identical size, oldest first, into a grid twice as wide and tall: t0 top-left,
// t1 top-right, t2 bottom-left, t3 bottom-right; missing quadrants black. 1 to 4 frames.
// INVALID_ARGUMENT names the frame whose size differs.
StatusOr<RgbImage> ComposeGrid(std::span<const RgbImage> frames);

// Pillow's Image.resize((width, height), BILINEAR, reducing_gap=None) on an RGB image.
RgbImage ResizeBilinear(const RgbImage& in, uint32_t width, uint32_t height);

// The crop boxes of spec §2.5 (empty when pan & scan does not activate), row-major.
std::vector<CropBox> PanAndScanCrops(uint32_t width, uint32_t height, const PanAndScanParams& p);

RgbImage Crop(const RgbImage& in, const CropBox& box);

// pixel = (float32(u8 / 255 in double) - 0.5f) / 0.5f, as the processor's rescale + normalize.
const float* PixelValueTable();  // 256 entries

struct PreprocessOptions {
  uint32_t size = 896;  // the model's vision_config.image_size
  bool pan_and_scan = false;
  PanAndScanParams pan_and_scan_params;
};

struct PixelValues {
  uint32_t size = 0;
  int num_crops = 0;          // for the prompt builder
  std::vector<float> values;  // [1 + num_crops, 3, size, size]: the full image, then its crops
  size_t num_images() const { return values.size() / (3 * static_cast<size_t>(size) * size); }
};

// One image (e.g. a composed grid) → pixel_values, with optional pan & scan.
StatusOr<PixelValues> PreprocessImage(const RgbImage& image, const PreprocessOptions& options);

// A resized RGB8 image → float32 CHW at `out` ([3, height, width]).
void NormalizeToChw(const RgbImage& resized, float* out);

}  // namespace vlmserve
