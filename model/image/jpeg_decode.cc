// JPEG → RGB8 with libjpeg-turbo (see image.h for what it matches in Pillow).
//
// libjpeg reports errors through error_exit, which must not return: ours longjmps back into
// DecodeJpegCore, a C-style function whose frame holds only plain C structs. Warnings (corrupt
// data, premature end of file, bogus progression) are errors too. A progress monitor stops
// progressive files after max_jpeg_scans scans, max_memory_to_use bounds libjpeg's own buffers, and
// the declared size is checked after the header and before any pixel buffer exists.
#include <csetjmp>
#include <cstdio>
#include <cstring>

// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "model/image/decode_alloc.h"
#include "model/image/image.h"

namespace vlmserve {
namespace {

enum class JpegFailure { kNone, kError, kSize, kUnsupported, kScans };

struct JpegContext {
  jpeg_error_mgr err;  // first member: libjpeg hands us a pointer to it
  jmp_buf jump;
  jpeg_progress_mgr progress;
  int max_scans;
  uint64_t max_memory;
  uint32_t max_side;
  uint64_t max_pixels;
  uint8_t* (*alloc)(void* opaque, size_t bytes);
  void* opaque;
  uint32_t width, height;
  JpegFailure failure;
  char message[JMSG_LENGTH_MAX + 64];
};

JpegContext* ContextOf(j_common_ptr c) { return reinterpret_cast<JpegContext*>(c->err); }

void JpegErrorExit(j_common_ptr c) {
  JpegContext* ctx = ContextOf(c);
  (*c->err->format_message)(c, ctx->message);
  ctx->failure =
      c->err->msg_code == JERR_BAD_PRECISION ? JpegFailure::kUnsupported : JpegFailure::kError;
  std::longjmp(ctx->jump, 1);
}

void JpegEmitMessage(j_common_ptr c, int level) {
  if (level >= 0) return;  // trace messages
  JpegContext* ctx = ContextOf(c);
  (*c->err->format_message)(c, ctx->message);  // a warning: corrupt data, treated as an error
  ctx->failure = JpegFailure::kError;
  std::longjmp(ctx->jump, 1);
}

void JpegOutputMessage(j_common_ptr) {}  // libjpeg must never write to stderr

void JpegProgress(j_common_ptr c) {
  if (!c->is_decompressor) return;
  auto* d = reinterpret_cast<j_decompress_ptr>(c);
  JpegContext* ctx = ContextOf(c);
  if (d->input_scan_number > ctx->max_scans) {
    std::snprintf(ctx->message, sizeof(ctx->message), "more than %d scans (progressive JPEG)",
                  ctx->max_scans);
    ctx->failure = JpegFailure::kScans;
    std::longjmp(ctx->jump, 1);
  }
}

bool DecodeJpegCore(JpegContext* ctx, const uint8_t* data, size_t size) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&ctx->err);
  ctx->err.error_exit = JpegErrorExit;
  ctx->err.emit_message = JpegEmitMessage;
  ctx->err.output_message = JpegOutputMessage;
  volatile bool created = false;
  if (setjmp(ctx->jump)) {
    if (created) jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  created = true;
  cinfo.mem->max_memory_to_use = static_cast<long>(ctx->max_memory);
  ctx->progress.progress_monitor = JpegProgress;
  cinfo.progress = &ctx->progress;
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  ctx->width = cinfo.image_width;
  ctx->height = cinfo.image_height;
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(ctx->message, sizeof(ctx->message), "%s colour space",
                  cinfo.jpeg_color_space == JCS_CMYK ? "CMYK" : "YCCK");
    ctx->failure = JpegFailure::kUnsupported;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (cinfo.data_precision != 8) {
    std::snprintf(ctx->message, sizeof(ctx->message), "%d-bit precision", cinfo.data_precision);
    ctx->failure = JpegFailure::kUnsupported;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (cinfo.image_width == 0 || cinfo.image_height == 0 || cinfo.image_width > ctx->max_side ||
      cinfo.image_height > ctx->max_side ||
      static_cast<uint64_t>(cinfo.image_width) * cinfo.image_height > ctx->max_pixels) {
    ctx->failure = JpegFailure::kSize;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3 || cinfo.output_width != cinfo.image_width ||
      cinfo.output_height != cinfo.image_height) {
    std::snprintf(ctx->message, sizeof(ctx->message), "unexpected output layout");
    ctx->failure = JpegFailure::kError;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  const size_t stride = static_cast<size_t>(cinfo.output_width) * 3;
  uint8_t* out = ctx->alloc(ctx->opaque, stride * cinfo.output_height);
  if (!out) {
    std::snprintf(ctx->message, sizeof(ctx->message), "out of memory");
    ctx->failure = JpegFailure::kError;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

}  // namespace

StatusOr<RgbImage> DecodeJpeg(std::span<const uint8_t> bytes, const ImageLimits& lim,
                              const std::string& what) {
  RgbImage img;
  JpegContext ctx{};
  ctx.max_scans = lim.max_jpeg_scans;
  ctx.max_memory = lim.jpeg_max_memory;
  ctx.max_side = lim.max_side;
  ctx.max_pixels = lim.max_pixels;
  ctx.alloc = internal::AllocIntoVector;
  ctx.opaque = &img.rgb;
  if (!DecodeJpegCore(&ctx, bytes.data(), bytes.size())) {
    switch (ctx.failure) {
      case JpegFailure::kSize:
        RETURN_IF_ERROR(CheckImageSize(ctx.width, ctx.height, lim, what + ": JPEG"));
        return InternalError(what + ": JPEG size check disagreed");
      case JpegFailure::kUnsupported:
        return InvalidArgumentError(what +
                                    ": unsupported JPEG colour space/precision: " + ctx.message);
      case JpegFailure::kScans:
        return InvalidArgumentError(what + ": JPEG has " + ctx.message + "; the limit is " +
                                    std::to_string(lim.max_jpeg_scans));
      default:
        return InvalidArgumentError(what + ": invalid JPEG: " + ctx.message);
    }
  }
  img.width = ctx.width;
  img.height = ctx.height;
  return img;
}

}  // namespace vlmserve
