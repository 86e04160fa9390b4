// Image decoding against Pillow, and the hostile inputs it must survive.
//
// Goldens: tests/fixtures/images (tools/golden/make_image_goldens.py): every PNG colour type ×
// bit depth, plain and interlaced, and a set of JPEGs, with the sha256 of Pillow's
// Image.open(f).convert("RGB") under PyPI Pillow and Debian's python3-pil (built on the same
// libjpeg-turbo as vlmserve). Hostile inputs run inside this process, so an exit() or abort() from
// a library would fail the test run.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "model/image/image.h"
#include "tests/kernels/test_rng.h"
#include "tests/support/progressive_jpeg.h"
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

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string Digest(const RgbImage& img) {
  return Sha256::Hex(
      std::string_view(reinterpret_cast<const char*>(img.rgb.data()), img.rgb.size()));
}

TEST(ImageGoldenTest, PixelsEqualPillow) {
  const json goldens = json::parse(ReadFile(FixturePath("images/goldens.json")));
  int png = 0, jpeg = 0, interlaced = 0;
  for (const auto& [rel, want] : goldens["files"].items()) {
    const std::string data = ReadFile(FixturePath("images/" + rel));
    auto img = DecodeImage(Bytes(data), kDefaultImageLimits, rel);
    ASSERT_TRUE(img.ok()) << img.status().ToString();
    EXPECT_EQ(img->width, want["width"].get<uint32_t>()) << rel;
    EXPECT_EQ(img->height, want["height"].get<uint32_t>()) << rel;
    // Debian's Pillow uses the very libjpeg-turbo/libpng we link: identical, for PNG and JPEG.
    EXPECT_EQ(Digest(*img), want["sha256_debian"].get<std::string>())
        << rel << " (mode " << want["mode"] << ")";
    EXPECT_EQ(want["sha256_debian"], want["sha256_pypi"]) << rel << ": the two Pillows disagree";
    if (rel.rfind("png/", 0) == 0) {
      ++png;
      interlaced += rel.find("_i.png") != std::string::npos;
    } else {
      ++jpeg;
    }
  }
  EXPECT_GE(png, 48);  // 5 grey depths, 2 RGB, 2 grey+alpha, 2 RGBA, 4 palette, tRNS, × interlace
  EXPECT_GE(interlaced, 20);
  EXPECT_GE(jpeg, 9);
}

// PyPI Pillow bundles a newer libjpeg-turbo (3.x). The IDCT/upsampling may differ between
// versions; the stated bound is 2 levels per channel (measured: see goldens.json).
TEST(ImageGoldenTest, JpegWithinStatedDifferenceOfPyPiPillow) {
  const json goldens = json::parse(ReadFile(FixturePath("images/goldens.json")));
  int worst = 0, n = 0;
  for (const auto& [rel, want] : goldens["files"].items()) {
    if (rel.rfind("jpeg/", 0) != 0) continue;
    auto img = DecodeImage(Bytes(ReadFile(FixturePath("images/" + rel))), kDefaultImageLimits, rel);
    ASSERT_TRUE(img.ok());
    const std::string pypi =
        ReadFile(FixturePath("images/" + rel.substr(0, rel.size() - 4) + ".pypi.rgb"));
    ASSERT_EQ(pypi.size(), img->rgb.size()) << rel;
    for (size_t i = 0; i < pypi.size(); ++i) {
      worst = std::max(worst, std::abs(int(img->rgb[i]) - int(static_cast<uint8_t>(pypi[i]))));
    }
    ++n;
  }
  EXPECT_GE(n, 9);
  EXPECT_LE(worst, 2);
  std::printf("JPEG max |ours - PyPI Pillow %s| = %d over %d files\n",
              goldens["pillow_pypi"].get<std::string>().c_str(), worst, n);
}

// ---- hostile and broken inputs --------------------------------------------------------------

std::string Fixture(const std::string& rel) { return ReadFile(FixturePath("images/" + rel)); }

struct Hostile {
  const char* name;
  std::function<std::string()> bytes;
  const char* message;  // substring of the error
};

std::vector<Hostile> HostileInputs() {
  return {
      {"empty", [] { return std::string(); }, "frame: empty image data"},
      {"one_byte", [] { return std::string("\x89"); }, "unrecognised image data"},
      {"random",
       [] {
         testing::Rng r(1);
         std::string s(4096, '\0');
         for (char& ch : s) ch = static_cast<char>(r.Next());
         return s;
       },
       "unrecognised image data"},
      {"gif", [] { return std::string("GIF89a\x01\x00\x01\x00\x00\x00\x00;", 13); },
       "GIF images are not supported"},
      {"bmp", [] { return std::string("BM") + std::string(60, '\0'); },
       "BMP images are not supported"},
      {"webp", [] { return std::string("RIFF\x10\x00\x00\x00WEBPVP8 ", 16); },
       "WebP images are not supported"},
      {"tiff", [] { return std::string("II*\0\x08\0\0\0", 8); }, "TIFF images are not supported"},
      {"png_signature_only", [] { return std::string("\x89PNG\r\n\x1a\n"); },
       "invalid PNG: truncated PNG data"},
      {"png_truncated_in_idat",
       [] {
         std::string s = Fixture("png/rgb8_p.png");
         return s.substr(0, s.size() - 40);
       },
       "invalid PNG"},
      {"png_truncated_in_header", [] { return Fixture("png/rgba16_i.png").substr(0, 30); },
       "invalid PNG: truncated PNG data"},
      {"png_bad_crc", [] { return Fixture("bad/png_bad_crc.png"); },
       "invalid PNG: IHDR: CRC error"},
      {"png_corrupt_idat", [] { return Fixture("bad/png_bad_idat.png"); }, "invalid PNG: IDAT: "},
      {"png_0x0", [] { return Fixture("bad/png_0x0.png"); }, "frame: PNG: image is 0x0 (empty)"},
      {"png_1e6_bomb", [] { return Fixture("bad/png_1e6_bomb.png"); },
       "frame: PNG: image is 1000000x1000000, over the limit of 8192 pixels per side"},
      // Ancillary chunks declaring ~2 GiB right after a 1x1 header: skipped unread, so the file
      // is just truncated (libpng used to buffer the declared length first).
      {"png_tEXt_2g", [] { return Fixture("bad/png_tEXt_2g.png"); },
       "invalid PNG: truncated PNG data"},
      {"png_zTXt_2g", [] { return Fixture("bad/png_zTXt_2g.png"); },
       "invalid PNG: truncated PNG data"},
      {"png_iTXt_2g", [] { return Fixture("bad/png_iTXt_2g.png"); },
       "invalid PNG: truncated PNG data"},
      {"png_sPLT_2g", [] { return Fixture("bad/png_sPLT_2g.png"); },
       "invalid PNG: truncated PNG data"},
      {"png_pCAL_2g", [] { return Fixture("bad/png_pCAL_2g.png"); },
       "invalid PNG: truncated PNG data"},
      {"png_sCAL_2g", [] { return Fixture("bad/png_sCAL_2g.png"); },
       "invalid PNG: truncated PNG data"},
      {"png_iCCP_2g", [] { return Fixture("bad/png_iCCP_2g.png"); },
       "invalid PNG: truncated PNG data"},
      {"jpeg_soi_only", [] { return std::string("\xff\xd8\xff", 3); }, "invalid JPEG"},
      {"jpeg_truncated",
       [] {
         std::string s = Fixture("jpeg/baseline_420.jpg");
         return s.substr(0, s.size() / 2);
       },
       "invalid JPEG: Premature end of JPEG file"},
      {"jpeg_garbage_in_scan",
       [] {
         std::string s = Fixture("jpeg/baseline_444.jpg");
         for (size_t i = s.size() / 2; i < s.size() / 2 + 40; ++i) s[i] = static_cast<char>(0xff);
         return s;
       },
       "invalid JPEG"},
      {"jpeg_65500", [] { return Fixture("bad/jpeg_65500.jpg"); },
       "frame: JPEG: image is 65500x65500, over the limit of 8192 pixels per side"},
      {"jpeg_cmyk", [] { return Fixture("bad/jpeg_cmyk.jpg"); },
       "unsupported JPEG colour space/precision: CMYK colour space"},
      {"jpeg_12bit", [] { return Fixture("bad/jpeg_12bit.jpg"); },
       "unsupported JPEG colour space/precision"},
      {"jpeg_1000_scans", [] { return testing::ProgressiveJpeg(1000); },
       "frame: JPEG has more than 64 scans (progressive JPEG); the limit is 64"},
  };
}

class HostileImageTest : public ::testing::TestWithParam<Hostile> {};

TEST_P(HostileImageTest, RejectedCleanly) {
  const std::string data = GetParam().bytes();
  const auto t0 = std::chrono::steady_clock::now();
  auto img = DecodeImage(Bytes(data), kDefaultImageLimits, "frame");
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(img.ok()) << GetParam().name << " decoded";
  EXPECT_EQ(img.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(img.status().message().find(GetParam().message), std::string::npos)
      << "message: " << img.status().message() << "\nexpected to contain: " << GetParam().message;
  EXPECT_EQ(img.status().message().rfind("frame: ", 0), 0u) << img.status().message();
  EXPECT_LT(ms, 50.0) << "rejecting took " << ms << " ms";
}

INSTANTIATE_TEST_SUITE_P(Table, HostileImageTest, ::testing::ValuesIn(HostileInputs()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// Truncating a valid file anywhere gives a clean error — or, when only bytes after the last pixel
// data are missing (a PNG's trailing IDAT CRC or IEND, which Pillow does not require either),
// exactly the full image. Never a crash, never a partial image.
TEST(ImageDecodeTest, EveryTruncationIsAnErrorOrTheWholeImage) {
  for (const char* rel : {"png/palette4_trns_i.png", "png/gray16_p.png", "jpeg/progressive_420.jpg",
                          "jpeg/baseline_422.jpg"}) {
    const std::string data = Fixture(rel);
    auto full = DecodeImage(Bytes(data), kDefaultImageLimits, "frame");
    ASSERT_TRUE(full.ok());
    int accepted = 0;
    for (size_t n = 0; n < data.size(); n += (n < 100 ? 1 : 7)) {
      auto img = DecodeImage(Bytes(data.substr(0, n)), kDefaultImageLimits, "frame");
      if (img.ok()) {
        ++accepted;
        EXPECT_EQ(img->rgb, full->rgb) << rel << " cut at " << n;
        EXPECT_GE(n, data.size() - 16) << rel << " accepted when cut at " << n;
      } else {
        EXPECT_EQ(img.status().code(), StatusCode::kInvalidArgument);
      }
    }
    if (std::string(rel).rfind("jpeg/", 0) == 0) {
      EXPECT_EQ(accepted, 0) << rel;
    }
  }
}

long ReadStatusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

// The bombs are refused from their headers: peak memory barely moves (< 2 × the 16 MiB byte cap).
TEST(ImageDecodeTest, BombsDoNotGrowPeakMemory) {
  std::vector<std::string> bombs = {Fixture("bad/png_1e6_bomb.png"), Fixture("bad/jpeg_65500.jpg"),
                                    testing::ProgressiveJpeg(2000)};
  for (const char* c : {"tEXt", "zTXt", "iTXt", "sPLT", "pCAL", "sCAL", "iCCP"}) {
    bombs.push_back(Fixture(std::string("bad/png_") + c + "_2g.png"));
  }
  {
    std::ofstream reset("/proc/self/clear_refs");
    reset << "5";  // resets VmHWM to the current RSS
  }
  const long before = ReadStatusKb("VmHWM:");
  if (before < 0) GTEST_SKIP() << "no /proc/self/status";
  for (const std::string& b : bombs)
    EXPECT_FALSE(DecodeImage(Bytes(b), kDefaultImageLimits, "bomb").ok());
  const long growth_kb = ReadStatusKb("VmHWM:") - before;
  EXPECT_LT(growth_kb, 2 * 16 * 1024) << "peak RSS grew by " << growth_kb << " KiB";
}

// ---- limits, at the limit and one past it ----------------------------------------------------

TEST(ImageLimitsTest, RawFrames) {
  ImageLimits lim;
  lim.max_side = 64;
  lim.max_pixels = 64 * 32;
  std::vector<uint8_t> buf(64 * 32 * 3 + 3, 7);
  auto span = [&buf](size_t n) { return std::span<const uint8_t>(buf.data(), n); };
  EXPECT_TRUE(RawRgbImage(64, 32, span(64 * 32 * 3), lim, "f").ok());
  EXPECT_EQ(RawRgbImage(64, 32, span(64 * 32 * 3 - 1), lim, "f").status().message(),
            "f: raw RGB data is 6143 bytes, but 64x32x3 needs 6144");
  EXPECT_EQ(RawRgbImage(64, 32, span(64 * 32 * 3 + 1), lim, "f").status().message(),
            "f: raw RGB data is 6145 bytes, but 64x32x3 needs 6144");
  EXPECT_EQ(RawRgbImage(65, 1, span(65 * 3), lim, "f").status().message(),
            "f: image is 65x1, over the limit of 64 pixels per side");
  EXPECT_EQ(RawRgbImage(64, 33, span(0), lim, "f").status().message(),
            "f: image is 64x33 = 2112 pixels, over the limit of 2048");
  EXPECT_EQ(RawRgbImage(0, 5, span(0), lim, "f").status().message(), "f: image is 0x5 (empty)");
  EXPECT_EQ(RawRgbImage(0xFFFFFFFFu, 0xFFFFFFFFu, span(3), lim, "f").status().message(),
            "f: image is 4294967295x4294967295, over the limit of 64 pixels per side");
  auto img = RawRgbImage(2, 1, span(6), lim, "f");
  ASSERT_TRUE(img.ok());
  EXPECT_EQ(img->rgb, std::vector<uint8_t>(6, 7));
}

TEST(ImageLimitsTest, EncodedBytesSidesAndScans) {
  const std::string png = Fixture("png/rgb8_p.png");  // 37 x 23
  ImageLimits lim;
  lim.max_encoded_bytes = png.size();
  EXPECT_TRUE(DecodeImage(Bytes(png), lim, "f").ok());
  lim.max_encoded_bytes = png.size() - 1;
  EXPECT_EQ(DecodeImage(Bytes(png), lim, "f").status().message(),
            "f: encoded image is " + std::to_string(png.size()) + " bytes, over the limit of " +
                std::to_string(png.size() - 1));
  lim = ImageLimits{};
  lim.max_side = 37;
  EXPECT_TRUE(DecodeImage(Bytes(png), lim, "f").ok());
  lim.max_side = 36;
  EXPECT_EQ(DecodeImage(Bytes(png), lim, "f").status().message(),
            "f: PNG: image is 37x23, over the limit of 36 pixels per side");
  lim = ImageLimits{};
  lim.max_pixels = 37 * 23;
  EXPECT_TRUE(DecodeImage(Bytes(Fixture("jpeg/odd_size_420.jpg")), lim, "f").ok());
  lim.max_pixels = 37 * 23 - 1;
  EXPECT_EQ(DecodeImage(Bytes(Fixture("jpeg/odd_size_420.jpg")), lim, "f").status().message(),
            "f: JPEG: image is 37x23 = 851 pixels, over the limit of 850");

  lim = ImageLimits{};
  EXPECT_TRUE(DecodeImage(Bytes(testing::ProgressiveJpeg(64)), lim, "f").ok());
  EXPECT_EQ(DecodeImage(Bytes(testing::ProgressiveJpeg(65)), lim, "f").status().message(),
            "f: JPEG has more than 64 scans (progressive JPEG); the limit is 64");
}

}  // namespace
}  // namespace vlmserve
