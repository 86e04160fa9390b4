// Preprocessing speed for the serving case: decode four 240x160 PNG frames, compose the 2x2 grid,
// resize to 896x896 (Pillow-exact bilinear) and normalise to float32 CHW — ms per grid on one core,
// as JSON. Baseline: bench/preprocess_baseline.py (Pillow + Gemma3ImageProcessorPil) on the same
// frames and machine; it also writes the frames:
//   python3 bench/preprocess_baseline.py --frames-dir /tmp/frames
//   vlmserve_bench_preprocess /tmp/frames/frame_0.png ... /tmp/frames/frame_3.png [--repeats N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "model/image/image.h"
#include "model/image/preprocess.h"

int main(int argc, char** argv) {
  std::vector<std::string> files;
  int repeats = 50;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc)
      repeats = std::max(1, std::atoi(argv[++i]));
    else
      files.push_back(argv[i]);
  }
  if (files.empty() || files.size() > 4) {
    std::fprintf(stderr, "usage: %s FRAME.png [up to 4] [--repeats N]\n", argv[0]);
    return 2;
  }
  std::vector<std::string> bytes;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    bytes.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::vector<double> ms;
  vlmserve::PreprocessOptions opt;  // 896, no pan & scan
  double checksum = 0;
  for (int r = 0; r <= repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<vlmserve::RgbImage> frames;
    for (const auto& b : bytes) {
      auto img = vlmserve::DecodeImage({reinterpret_cast<const uint8_t*>(b.data()), b.size()},
                                       vlmserve::kDefaultImageLimits, "frame");
      if (!img.ok()) {
        std::fprintf(stderr, "%s\n", img.status().ToString().c_str());
        return 1;
      }
      frames.push_back(std::move(img).value());
    }
    auto grid = vlmserve::ComposeGrid(frames);
    auto pv = vlmserve::PreprocessImage(*grid, opt);
    const double t =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    checksum += pv->values[12345];
    if (r > 0) ms.push_back(t);  // run 0 warms caches and the allocator
  }
  std::sort(ms.begin(), ms.end());
  std::printf(
      "{\"bench\": \"preprocess_grid\", \"impl\": \"vlmserve\", \"frames\": %zu, \"size\": 896, "
      "\"repeats\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"checksum\": %.4f}\n",
      files.size(), repeats, ms[(ms.size() - 1) / 2], ms.front(), checksum);
  return 0;
}
