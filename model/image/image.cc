// Format sniffing, size checks, raw frames and dispatch (see image.h). The PNG and JPEG decoders
// are in png_decode.cc and jpeg_decode.cc.
#include "model/image/image.h"

#include <cstring>

#include "common/checked_math.h"

namespace vlmserve {

ImageFormat SniffImageFormat(std::span<const uint8_t> b) {
  auto starts = [&b](const char* magic, size_t n, size_t at = 0) {
    return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
  };
  if (starts("\x89PNG\r\n\x1a\n", 8)) return ImageFormat::kPng;
  if (starts("\xff\xd8\xff", 3)) return ImageFormat::kJpeg;
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return ImageFormat::kGif;
  if (starts("BM", 2)) return ImageFormat::kBmp;
  if (starts("RIFF", 4) && starts("WEBP", 4, 8)) return ImageFormat::kWebp;
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return ImageFormat::kTiff;
  return ImageFormat::kUnknown;
}

const char* ImageFormatName(ImageFormat f) {
  switch (f) {
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kGif:
      return "GIF";
    case ImageFormat::kBmp:
      return "BMP";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kTiff:
      return "TIFF";
    case ImageFormat::kUnknown:
      return "unknown";
  }
  return "unknown";
}

Status CheckImageSize(uint64_t width, uint64_t height, const ImageLimits& lim,
                      const std::string& what) {
  const std::string dims = std::to_string(width) + "x" + std::to_string(height);
  if (width == 0 || height == 0)
    return InvalidArgumentError(what + ": image is " + dims + " (empty)");
  if (width > lim.max_side || height > lim.max_side) {
    return InvalidArgumentError(what + ": image is " + dims + ", over the limit of " +
                                std::to_string(lim.max_side) + " pixels per side");
  }
  if (width * height > lim.max_pixels) {  // both ≤ max_side < 2^32: no overflow
    return InvalidArgumentError(what + ": image is " + dims + " = " +
                                std::to_string(width * height) + " pixels, over the limit of " +
                                std::to_string(lim.max_pixels));
  }
  return Status::Ok();
}

StatusOr<RgbImage> DecodeImage(std::span<const uint8_t> bytes, const ImageLimits& lim,
                               const std::string& what) {
  if (bytes.empty()) return InvalidArgumentError(what + ": empty image data");
  if (bytes.size() > lim.max_encoded_bytes) {
    return InvalidArgumentError(what + ": encoded image is " + std::to_string(bytes.size()) +
                                " bytes, over the limit of " +
                                std::to_string(lim.max_encoded_bytes));
  }
  const ImageFormat f = SniffImageFormat(bytes);
  switch (f) {
    case ImageFormat::kPng:
      return DecodePng(bytes, lim, what);
    case ImageFormat::kJpeg:
      return DecodeJpeg(bytes, lim, what);
    case ImageFormat::kUnknown:
      return InvalidArgumentError(what + ": unrecognised image data (expected PNG or JPEG)");
    default:
      return InvalidArgumentError(what + ": " + ImageFormatName(f) +
                                  " images are not supported (send PNG, JPEG or raw RGB)");
  }
}

StatusOr<RgbImage> RawRgbImage(uint32_t width, uint32_t height, std::span<const uint8_t> rgb,
                               const ImageLimits& lim, const std::string& what) {
  RETURN_IF_ERROR(CheckImageSize(width, height, lim, what));
  const auto need = CheckedProduct({width, height, 3});  // cannot overflow after the check; kept
  if (!need || rgb.size() != *need) {
    return InvalidArgumentError(what + ": raw RGB data is " + std::to_string(rgb.size()) +
                                " bytes, but " + std::to_string(width) + "x" +
                                std::to_string(height) + "x3 needs " +
                                (need ? std::to_string(*need) : std::string("more")));
  }
  RgbImage img;
  img.width = width;
  img.height = height;
  img.rgb.assign(rgb.begin(), rgb.end());
  return img;
}

}  // namespace vlmserve
