// Preprocessing (see preprocess.h). The resize follows Pillow's src/libImaging/Resample.c
// (precompute_coeffs, normalize_coeffs_8bpc, ImagingResampleHorizontal/Vertical_8bpc and the
// two-pass driver ImagingResampleInner), reimplemented here for 3-channel interleaved RGB8.
#include "model/image/preprocess.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace vlmserve {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit images

// Per output index: the first source index, the tap count, and `ksize` fixed-point taps.
struct Coefficients {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> taps;  // [out, ksize]
};

double Triangle(double x) {  // Pillow's bilinear_filter, support 1.0
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// precompute_coeffs + normalize_coeffs_8bpc for one axis (no box: the whole input).
Coefficients Precompute(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.taps.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // C truncation, as Pillow
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = Triangle((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double k = ww != 0.0 ? w[x] / ww : w[x];
      c.taps[static_cast<size_t>(xx) * c.ksize + x] =
          k < 0 ? static_cast<int32_t>(-0.5 + k * (1 << kPrecisionBits))
                : static_cast<int32_t>(0.5 + k * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift, as Pillow
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

StatusOr<RgbImage> ComposeGrid(std::span<const RgbImage> frames) {
  if (frames.empty() || frames.size() > 4) {
    return InvalidArgumentError("a grid takes 1 to 4 frames, got " + std::to_string(frames.size()));
  }
  const uint32_t w = frames[0].width, h = frames[0].height;
  for (size_t i = 1; i < frames.size(); ++i) {
    if (frames[i].width != w || frames[i].height != h) {
      return InvalidArgumentError(
          "frames[" + std::to_string(i) + "] is " + std::to_string(frames[i].width) + "x" +
          std::to_string(frames[i].height) + " but frames[0] is " + std::to_string(w) + "x" +
          std::to_string(h) + "; all frames of a grid must have the same size");
    }
  }
  RgbImage grid;
  grid.width = 2 * w;
  grid.height = 2 * h;
  grid.rgb.assign(static_cast<size_t>(grid.width) * grid.height * 3, 0);  // black
  const size_t frame_row = static_cast<size_t>(w) * 3, grid_row = frame_row * 2;
  for (size_t i = 0; i < frames.size(); ++i) {
    const size_t x0 = (i % 2) * frame_row, y0 = (i / 2) * h;
    for (uint32_t y = 0; y < h; ++y) {
      std::memcpy(&grid.rgb[(y0 + y) * grid_row + x0], &frames[i].rgb[y * frame_row], frame_row);
    }
  }
  return grid;
}

RgbImage ResizeBilinear(const RgbImage& in, uint32_t out_w, uint32_t out_h) {
  if (in.width == out_w && in.height == out_h) return in;  // Pillow returns a copy
  const int iw = static_cast<int>(in.width), ih = static_cast<int>(in.height);
  const int ow = static_cast<int>(out_w), oh = static_cast<int>(out_h);
  const bool need_h = ow != iw, need_v = oh != ih;
  const Coefficients cv = Precompute(ih, oh);

  // Horizontal pass over the source rows the vertical pass will read.
  RgbImage mid;
  int row_offset = 0;
  if (need_h) {
    const Coefficients ch = Precompute(iw, ow);
    const int first_row = cv.first[0];
    const int last_row = cv.first[oh - 1] + cv.count[oh - 1];
    row_offset = first_row;
    mid.width = out_w;
    mid.height = static_cast<uint32_t>(last_row - first_row);
    mid.rgb.resize(static_cast<size_t>(mid.width) * mid.height * 3);
    for (int y = 0; y < static_cast<int>(mid.height); ++y) {
      const uint8_t* src = &in.rgb[static_cast<size_t>(y + first_row) * iw * 3];
      uint8_t* dst = &mid.rgb[static_cast<size_t>(y) * ow * 3];
      for (int xx = 0; xx < ow; ++xx) {
        const int32_t* k = &ch.taps[static_cast<size_t>(xx) * ch.ksize];
        const uint8_t* p = src + static_cast<size_t>(ch.first[xx]) * 3;
        int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < ch.count[xx]; ++x, p += 3) {
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        dst[3 * xx] = Clip8(s0);
        dst[3 * xx + 1] = Clip8(s1);
        dst[3 * xx + 2] = Clip8(s2);
      }
    }
  }
  const RgbImage& src_img = need_h ? mid : in;
  if (!need_v) return need_h ? std::move(mid) : in;

  RgbImage out;
  out.width = src_img.width;
  out.height = out_h;
  out.rgb.resize(static_cast<size_t>(out.width) * oh * 3);
  const size_t row = static_cast<size_t>(src_img.width) * 3;
  std::vector<int32_t> acc(row);
  for (int yy = 0; yy < oh; ++yy) {
    const int32_t* k = &cv.taps[static_cast<size_t>(yy) * cv.ksize];
    const int first = cv.first[yy] - row_offset;
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < cv.count[yy]; ++y) {  // same sums as Pillow, in row order per pixel
      const uint8_t* s = &src_img.rgb[static_cast<size_t>(first + y) * row];
      const int32_t ky = k[y];
      for (size_t i = 0; i < row; ++i) acc[i] += s[i] * ky;
    }
    uint8_t* dst = &out.rgb[static_cast<size_t>(yy) * row];
    for (size_t i = 0; i < row; ++i) dst[i] = Clip8(acc[i]);
  }
  return out;
}

std::vector<CropBox> PanAndScanCrops(uint32_t width, uint32_t height, const PanAndScanParams& p) {
  // The processor's arithmetic (Python floats and floor/ceil), spec §2.5.
  const double w = width, h = height;
  uint32_t nw = 1, nh = 1;
  if (width >= height) {
    if (w / h < p.min_ratio_to_activate) return {};
    double n = std::floor(w / h + 0.5);
    n = std::min(std::floor(w / p.min_crop_size), n);
    n = std::max(2.0, n);
    n = std::min(static_cast<double>(p.max_num_crops), n);
    nw = static_cast<uint32_t>(n);
  } else {
    if (h / w < p.min_ratio_to_activate) return {};
    double n = std::floor(h / w + 0.5);
    n = std::min(std::floor(h / p.min_crop_size), n);
    n = std::max(2.0, n);
    n = std::min(static_cast<double>(p.max_num_crops), n);
    nh = static_cast<uint32_t>(n);
  }
  const auto cw = static_cast<uint32_t>(std::ceil(w / nw));
  const auto ch = static_cast<uint32_t>(std::ceil(h / nh));
  if (std::min(cw, ch) < p.min_crop_size) return {};
  std::vector<CropBox> boxes;
  for (uint32_t y = 0; y < nh; ++y) {
    for (uint32_t x = 0; x < nw; ++x) {
      const uint32_t x0 = x * cw, y0 = y * ch;
      boxes.push_back({x0, y0, std::min(cw, width - x0), std::min(ch, height - y0)});
    }
  }
  return boxes;
}

RgbImage Crop(const RgbImage& in, const CropBox& b) {
  RgbImage out;
  out.width = b.width;
  out.height = b.height;
  out.rgb.resize(static_cast<size_t>(b.width) * b.height * 3);
  for (uint32_t y = 0; y < b.height; ++y) {
    std::memcpy(&out.rgb[static_cast<size_t>(y) * b.width * 3],
                &in.rgb[(static_cast<size_t>(b.y + y) * in.width + b.x) * 3],
                static_cast<size_t>(b.width) * 3);
  }
  return out;
}

const float* PixelValueTable() {
  // rescale: float64(u8) * (1/255) cast to float32; normalize: (v - 0.5f) / 0.5f in float32.
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int u = 0; u < 256; ++u) {
      const float v = static_cast<float>(static_cast<double>(u) * (1.0 / 255.0));
      t[u] = (v - 0.5f) / 0.5f;
    }
    return t;
  }();
  return table.data();
}

void NormalizeToChw(const RgbImage& img, float* out) {
  const float* table = PixelValueTable();
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  for (size_t i = 0; i < plane; ++i) {
    out[i] = table[img.rgb[3 * i]];
    out[plane + i] = table[img.rgb[3 * i + 1]];
    out[2 * plane + i] = table[img.rgb[3 * i + 2]];
  }
}

StatusOr<PixelValues> PreprocessImage(const RgbImage& image, const PreprocessOptions& opt) {
  if (opt.size == 0 || opt.size > 8192) {
    return InvalidArgumentError("preprocess size " + std::to_string(opt.size) + " is out of range");
  }
  if (image.width == 0 || image.height == 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
    return InvalidArgumentError("preprocess: empty or inconsistent image");
  }
  const std::vector<CropBox> crops =
      opt.pan_and_scan ? PanAndScanCrops(image.width, image.height, opt.pan_and_scan_params)
                       : std::vector<CropBox>{};
  PixelValues pv;
  pv.size = opt.size;
  pv.num_crops = static_cast<int>(crops.size());
  const size_t per_image = 3 * static_cast<size_t>(opt.size) * opt.size;
  pv.values.resize(per_image * (1 + crops.size()));
  NormalizeToChw(ResizeBilinear(image, opt.size, opt.size), pv.values.data());
  for (size_t i = 0; i < crops.size(); ++i) {
    NormalizeToChw(ResizeBilinear(Crop(image, crops[i]), opt.size, opt.size),
                   pv.values.data() + per_image * (1 + i));
  }
  return pv;
}

}  // namespace vlmserve
