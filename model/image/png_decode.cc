// PNG → RGB8 with libpng's low-level API (see image.h for the Pillow rules it follows).
//
// libpng reports errors by longjmp. All of its work happens in DecodePngCore, a C-style function
// whose frame holds only plain data (volatile pointers freed on the error path), and whose output
// buffer comes from a callback that cannot throw; the C++ wrapper turns the result into a Status.
// Limits: png_set_user_limits (sides) before the header is read, the pixel count right after it;
// ancillary chunks (text, ICC profiles, palettes of suggestions, ...) are never buffered: they are
// skipped unread; CRC errors in any chunk are errors (Pillow refuses them too).
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "model/image/decode_alloc.h"
#include "model/image/image.h"

namespace vlmserve {
namespace {

struct PngContext {
  const uint8_t* data;
  size_t size;
  size_t pos;
  uint32_t max_side;
  uint64_t max_pixels;
  // Output: the callback allocates width × height × 3 bytes (nullptr on failure).
  uint8_t* (*alloc)(void* opaque, size_t bytes);
  void* opaque;
  uint32_t width, height;
  bool size_rejected;  // the header was fine but the image is over a limit
  char message[256];
};

void PngErrorFn(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof(ctx->message), "%s", msg);
  png_longjmp(png, 1);
}

void PngWarningFn(png_structp, png_const_charp) {
  // Ancillary-chunk complaints (e.g. "iCCP: known incorrect sRGB profile"); libpng goes on, and so
  // does Pillow. Critical problems arrive through PngErrorFn.
}

void PngReadFn(png_structp png, png_bytep out, size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (n > ctx->size - ctx->pos) png_error(png, "truncated PNG data");
  std::memcpy(out, ctx->data + ctx->pos, n);
  ctx->pos += n;
}

// Returns true on success. No C++ object with a destructor lives in this frame.
bool DecodePngCore(PngContext* ctx) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, PngErrorFn, PngWarningFn);
  if (!png) {
    std::snprintf(ctx->message, sizeof(ctx->message), "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  png_bytep* volatile rows = nullptr;
  uint8_t* volatile gray16 = nullptr;  // 16-bit grey is read raw and clipped (Pillow's "I;16")
  if (setjmp(png_jmpbuf(png))) {
    std::free(rows);
    std::free(gray16);
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (!info) png_error(png, "out of memory");
  png_set_user_limits(png, ctx->max_side, ctx->max_side);
  // Skip every ancillary chunk, known or unknown (tRNS aside): none of them changes the pixels we
  // produce (no gamma, background, shift or colour management is applied, as in Pillow), and a
  // handled one is buffered whole at its declared length — a 41-byte file declaring a 2 GiB tEXt
  // cost 2 GiB and seconds of CPU, because libpng 1.6.39 only warns when chunk_malloc_max is
  // exceeded. Skipped chunks are read through a small stack buffer and checksummed.
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
  png_set_chunk_malloc_max(png, 8u << 20);
  png_set_chunk_cache_max(png, 256);
  png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
  png_set_read_fn(png, ctx, PngReadFn);
  png_read_info(png, info);

  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, nullptr, nullptr);
  ctx->width = w;
  ctx->height = h;
  if (static_cast<uint64_t>(w) * h > ctx->max_pixels) {
    ctx->size_rejected = true;
    png_error(png, "too many pixels");
  }
  const bool raw_gray16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // tRNS becomes alpha...
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16 && !raw_gray16) png_set_strip_16(png);  // keep the high byte
  png_set_strip_alpha(png);                               // ...and every alpha is dropped
  if (!raw_gray16 && (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)) {
    png_set_gray_to_rgb(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  if (row_bytes != static_cast<size_t>(w) * (raw_gray16 ? 2 : 3)) {
    png_error(png, "unexpected row layout after transformations");
  }

  uint8_t* out = ctx->alloc(ctx->opaque, static_cast<size_t>(w) * h * 3);
  if (!out) png_error(png, "out of memory");
  uint8_t* target = out;
  if (raw_gray16) {
    gray16 = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(w) * h * 2));
    if (!gray16) png_error(png, "out of memory");
    target = gray16;
  }
  rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * h));
  if (!rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = target + static_cast<size_t>(y) * row_bytes;
  png_read_image(png, rows);

  if (raw_gray16) {
    for (size_t i = 0; i < static_cast<size_t>(w) * h; ++i) {
      const unsigned v = (static_cast<unsigned>(gray16[2 * i]) << 8) | gray16[2 * i + 1];
      const uint8_t g = v > 255 ? 255 : static_cast<uint8_t>(v);
      out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = g;
    }
  }
  std::free(rows);
  std::free(gray16);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

}  // namespace

StatusOr<RgbImage> DecodePng(std::span<const uint8_t> bytes, const ImageLimits& lim,
                             const std::string& what) {
  // The IHDR chunk is always first: check the declared size before libpng allocates anything, so
  // a 59-byte file declaring 10^6 x 10^6 gets the same message as any other oversized image.
  if (bytes.size() >= 24 && std::memcmp(bytes.data() + 12, "IHDR", 4) == 0) {
    auto be32 = [&bytes](size_t at) {
      return (uint32_t{bytes[at]} << 24) | (uint32_t{bytes[at + 1]} << 16) |
             (uint32_t{bytes[at + 2]} << 8) | uint32_t{bytes[at + 3]};
    };
    RETURN_IF_ERROR(CheckImageSize(be32(16), be32(20), lim, what + ": PNG"));
  }
  RgbImage img;
  PngContext ctx{};
  ctx.data = bytes.data();
  ctx.size = bytes.size();
  ctx.max_side = lim.max_side;
  ctx.max_pixels = lim.max_pixels;
  ctx.alloc = internal::AllocIntoVector;
  ctx.opaque = &img.rgb;
  if (!DecodePngCore(&ctx)) {
    if (ctx.size_rejected) {
      RETURN_IF_ERROR(CheckImageSize(ctx.width, ctx.height, lim, what + ": PNG"));
    }
    const std::string m = ctx.message;
    // libpng's own user-limit message does not say which limit; ours does.
    if (m.find("exceeds user limit") != std::string::npos ||
        m.find("Image width is too large") != std::string::npos ||
        m.find("Image height is too large") != std::string::npos) {
      return InvalidArgumentError(what + ": PNG: " + m +
                                  " (limit: " + std::to_string(lim.max_side) + " pixels per side)");
    }
    return InvalidArgumentError(what + ": invalid PNG: " + m);
  }
  img.width = ctx.width;
  img.height = ctx.height;
  return img;
}

}  // namespace vlmserve
