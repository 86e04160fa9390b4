// Image decoding for frames from untrusted clients (reliability.md G1, G2): PNG (libpng's low-level
// API), JPEG (libjpeg-turbo) and raw RGB8, into RGB8 exactly as Pillow's
// Image.open(f).convert("RGB") produces it.
//
// Pillow's rules, as followed here (checked against both Pillow 13 and Debian's 9.4):
//   PNG: grey of 1/2/4 bits scales to 0..255; 16-bit samples keep their high byte — except 16-bit
//        grey without alpha, which Pillow opens as "I;16" and converts by clipping to 255; alpha
//        (RGBA, grey+alpha, palette or colour tRNS) is dropped, never composited; gAMA, iCCP and
//        sRGB are ignored; Adam7 interlacing is supported.
//   JPEG: libjpeg-turbo's default decode (islow IDCT, fancy upsampling) to RGB; EXIF orientation
//        is ignored (as Image.open does); CMYK/YCCK and non-8-bit precision are refused.
//
// Every size is checked against ImageLimits from the header, before any pixel buffer exists.
// The libraries' errors come back through setjmp/longjmp inside small C-style functions with no
// C++ object alive across the jump; libjpeg warnings count as errors. Nothing here can exit or
// abort the process. Errors are INVALID_ARGUMENT and name the frame (`what`), the problem and the
// limit.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace vlmserve {

struct ImageLimits {
  uint32_t max_side = 8192;                // width and height, each
  uint64_t max_pixels = 33'554'432;        // width × height (2^25: e.g. 8192 × 4096)
  uint64_t max_encoded_bytes = 16u << 20;  // one encoded frame
  int max_jpeg_scans = 64;                 // progressive JPEG scans (a baseline JPEG has 1)
  uint64_t jpeg_max_memory = 512u << 20;   // libjpeg's working memory (progressive coefficients)
};
inline constexpr ImageLimits kDefaultImageLimits{};

struct RgbImage {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgb;  // [height][width][3], row-major, R G B
};

enum class ImageFormat { kPng, kJpeg, kGif, kBmp, kWebp, kTiff, kUnknown };
ImageFormat SniffImageFormat(std::span<const uint8_t> bytes);
const char* ImageFormatName(ImageFormat f);

// PNG or JPEG, by content. `what` names the input in errors, e.g. "frames[2]".
StatusOr<RgbImage> DecodeImage(std::span<const uint8_t> bytes, const ImageLimits& limits,
                               const std::string& what);
StatusOr<RgbImage> DecodePng(std::span<const uint8_t> bytes, const ImageLimits& limits,
                             const std::string& what);
StatusOr<RgbImage> DecodeJpeg(std::span<const uint8_t> bytes, const ImageLimits& limits,
                              const std::string& what);

// Raw RGB8: `rgb` must hold exactly width × height × 3 bytes (computed without overflow).
StatusOr<RgbImage> RawRgbImage(uint32_t width, uint32_t height, std::span<const uint8_t> rgb,
                               const ImageLimits& limits, const std::string& what);

// Shared by the decoders: width/height against max_side and max_pixels.
Status CheckImageSize(uint64_t width, uint64_t height, const ImageLimits& limits,
                      const std::string& what);

}  // namespace vlmserve
