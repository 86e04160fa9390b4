// Preprocessing against Pillow and Gemma3ImageProcessorPil (goldens from
// tools/golden/make_preprocess_goldens.py): resized uint8 buffers by sha256 for ≥ 30 images, the
// u8 → float table bit for bit, full pixel_values of two small cases, pan & scan crop boxes and
// pixels, and the grid rules.
#include "model/image/preprocess.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "model/image/image.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using nlohmann::json;
using vlmserve::testing::FixturePath;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The generator's procedural image: R = (7x + 3y + 11s) & 255, G = ((x*y >> 3) ^ s) & 255,
// B = ((x ^ y) + 5s) & 255, with 64-bit unsigned arithmetic.
RgbImage Procedural(uint32_t w, uint32_t h, uint64_t s) {
  RgbImage img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (uint64_t y = 0; y < h; ++y) {
    for (uint64_t x = 0; x < w; ++x) {
      uint8_t* p = &img.rgb[(y * w + x) * 3];
      p[0] = static_cast<uint8_t>((x * 7 + y * 3 + s * 11) & 255);
      p[1] = static_cast<uint8_t>((((x * y) >> 3) ^ s) & 255);
      p[2] = static_cast<uint8_t>(((x ^ y) + s * 5) & 255);
    }
  }
  return img;
}

template <typename T>
std::string Digest(const std::vector<T>& v) {
  return Sha256::Hex(
      std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
}

RgbImage Source(const json& s) {
  const std::string kind = s["kind"];
  if (kind == "procedural") return Procedural(s["width"], s["height"], s["seed"]);
  if (kind == "grid") {
    std::vector<RgbImage> frames;
    for (const json& f : s["frames"]) frames.push_back(Procedural(f[0], f[1], f[2]));
    return std::move(ComposeGrid(frames)).value();
  }
  const std::string bytes = ReadFile(FixturePath(s["path"]));
  auto img = DecodeImage({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                         kDefaultImageLimits, s["path"]);
  EXPECT_TRUE(img.ok()) << img.status().ToString();
  return std::move(img).value();
}

const json& Goldens() {
  static const json g = json::parse(ReadFile(FixturePath("preprocess/goldens.json")));
  return g;
}

TEST(PreprocessTest, ResizeEqualsPillow) {
  int n = 0, files = 0;
  for (const json& c : Goldens()["resize"]) {
    const RgbImage src = Source(c["source"]);
    if (c.contains("grid_sha256")) {
      EXPECT_EQ(Digest(src.rgb), c["grid_sha256"]) << c["source"].dump();
    }
    const uint32_t size = c["size"];
    const RgbImage out = ResizeBilinear(src, size, size);
    ASSERT_EQ(out.width, size);
    ASSERT_EQ(out.height, size);
    EXPECT_EQ(Digest(out.rgb), c["sha256"].get<std::string>())
        << c["source"].dump() << " → " << size;
    ++n;
    files += c["source"]["kind"] == "file";
  }
  EXPECT_GE(n, 30);
  EXPECT_GE(files, 24);  // every PNG colour type and bit depth
}

TEST(PreprocessTest, FloatTableIsBitIdentical) {
  const auto bits = Goldens()["table_bits"].get<std::vector<uint32_t>>();
  ASSERT_EQ(bits.size(), 256u);
  const float* table = PixelValueTable();
  for (int u = 0; u < 256; ++u) {
    uint32_t b;
    std::memcpy(&b, &table[u], 4);
    EXPECT_EQ(b, bits[u]) << "u8 " << u << ": ours " << table[u];
  }
}

TEST(PreprocessTest, PixelValuesEqualTheProcessor) {
  for (const json& c : Goldens()["processor"]) {
    PreprocessOptions opt;
    opt.size = c["size"];
    auto pv = PreprocessImage(Source(c["source"]), opt);
    ASSERT_TRUE(pv.ok());
    const std::string want = ReadFile(FixturePath(c["file"]));
    ASSERT_EQ(want.size(), pv->values.size() * 4) << c["name"];
    EXPECT_EQ(std::memcmp(want.data(), pv->values.data(), want.size()), 0) << c["name"];
  }
}

TEST(PreprocessTest, PanAndScanBoxes) {
  for (const json& c : Goldens()["pan_and_scan"]) {
    std::vector<CropBox> want;
    for (const json& b : c["boxes"]) want.push_back({b[0], b[1], b[2], b[3]});
    EXPECT_EQ(PanAndScanCrops(c["width"], c["height"], {}), want)
        << c["width"] << "x" << c["height"];
  }
}

TEST(PreprocessTest, PanAndScanPixelsEqualTheProcessor) {
  for (const json& c : Goldens()["pan_and_scan_pixels"]) {
    PreprocessOptions opt;
    opt.size = c["size"];
    opt.pan_and_scan = true;
    auto pv = PreprocessImage(Source(c["source"]), opt);
    ASSERT_TRUE(pv.ok());
    EXPECT_EQ(pv->num_crops, c["num_crops"][0].get<int>()) << c["name"];
    EXPECT_EQ(pv->num_images(), c["shape"][0].get<size_t>()) << c["name"];
    EXPECT_EQ(Digest(pv->values), c["sha256"].get<std::string>()) << c["name"];
  }
}

TEST(PreprocessTest, GridLayoutAndErrors) {
  std::vector<RgbImage> frames;
  for (uint8_t v : {10, 20, 30}) {
    RgbImage f;
    f.width = 2;
    f.height = 1;
    f.rgb.assign(6, v);
    frames.push_back(f);
  }
  auto g = ComposeGrid(frames);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->width, 4u);
  EXPECT_EQ(g->height, 2u);
  // Row 0: t0 t0 t1 t1; row 1: t2 t2 black black.
  const std::vector<uint8_t> row0 = {10, 10, 10, 10, 10, 10, 20, 20, 20, 20, 20, 20};
  const std::vector<uint8_t> row1 = {30, 30, 30, 30, 30, 30, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(g->rgb.begin(), g->rgb.begin() + 12), row0);
  EXPECT_EQ(std::vector<uint8_t>(g->rgb.begin() + 12, g->rgb.end()), row1);

  frames[2].width = 1;
  frames[2].rgb.resize(3);
  EXPECT_EQ(ComposeGrid(frames).status().message(),
            "frames[2] is 1x1 but frames[0] is 2x1; all frames of a grid must have the same size");
  EXPECT_EQ(ComposeGrid({}).status().message(), "a grid takes 1 to 4 frames, got 0");
  std::vector<RgbImage> five(5, frames[0]);
  EXPECT_EQ(ComposeGrid(five).status().message(), "a grid takes 1 to 4 frames, got 5");
}

TEST(PreprocessTest, SameSizeIsACopyAndOneAxisIsOnePass) {
  const RgbImage img = Procedural(7, 5, 3);
  EXPECT_EQ(ResizeBilinear(img, 7, 5).rgb, img.rgb);
  const RgbImage wide = ResizeBilinear(img, 14, 5);  // horizontal pass only
  EXPECT_EQ(wide.height, 5u);
  EXPECT_EQ(wide.width, 14u);
}

}  // namespace
}  // namespace vlmserve
