// vlmserve-preprocess: one image, or 1–4 frames composed into the 2×2 grid, through Gemma 3's
// preprocessing (bit-exact to Gemma3ImageProcessorPil), written as raw float32 NCHW.
//
//   vlmserve-preprocess (--image FILE | --frames F1 [F2 F3 F4]) (--size N | --config FILE)
//                       [--pan-and-scan] --out FILE
//
// --out receives [n, 3, size, size] float32 (little-endian), the full image first, then its pan &
// scan crops. One JSON line on stdout describes it. Exit codes: 0 ok, 1 bad input, 2 bad usage.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/json_util.h"
#include "model/processor.h"
#include "model/weights/config_json.h"

namespace vlmserve {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "vlmserve-preprocess: error: %s\n", s.ToString().c_str());
  return 1;
}

StatusOr<ImageBytes> Read(const std::string& path, const std::string& what) {
  ImageBytes b;
  auto bytes = ReadFileBounded(path, kDefaultImageLimits.max_encoded_bytes);
  if (!bytes.ok()) return bytes.status().WithPrefix(what + " (" + path + ")");
  b.bytes = std::move(bytes).value();
  b.name = what + " (" + path + ")";
  return b;
}

int Run(int argc, char** argv) {
  CLI::App app{
      "vlmserve-preprocess: decode an image (or compose 1-4 frames into the 2x2 grid: "
      "t0 t1 / t2 t3, missing quadrants black), resize it with Pillow-exact BILINEAR to "
      "the model's size, normalise to [-1, 1], and write float32 [n, 3, size, size] "
      "(full image first, then pan & scan crops)."};
  std::string image, config, out;
  std::vector<std::string> frames;
  uint32_t size = 0;
  bool pan_and_scan = false;
  auto* img_opt =
      app.add_option("--image", image, "A PNG or JPEG image (e.g. a pre-composed grid)");
  auto* frames_opt =
      app.add_option("--frames", frames, "1 to 4 frames of one size, oldest first")->expected(1, 4);
  img_opt->excludes(frames_opt);
  auto* size_opt = app.add_option("--size", size, "Output side in pixels (896 for Gemma 3)")
                       ->check(CLI::Range(1u, 8192u));
  auto* config_opt = app.add_option("--config", config, "Take the size from this config.json");
  size_opt->excludes(config_opt);
  app.add_flag("--pan-and-scan", pan_and_scan,
               "Also emit pan & scan crops (min crop 256, max 4 crops, min ratio 1.2)");
  app.add_option("--out", out, "Output file for the float32 pixels")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (image.empty() == frames.empty()) {
    std::fprintf(stderr, "vlmserve-preprocess: give --image FILE or --frames F1 [F2 F3 F4]\n");
    return 2;
  }
  if (config.empty() == (size == 0)) {
    std::fprintf(stderr, "vlmserve-preprocess: give --size N or --config FILE\n");
    return 2;
  }
  if (!config.empty()) {
    auto c = LoadGemma3Config(config);
    if (!c.ok()) return Fail(c.status());
    if (!c->has_vision)
      return Fail(InvalidArgumentError(config + ": a text-only model has no image size"));
    size = static_cast<uint32_t>(c->vision.image_size);
  }

  // The processor's image half: the same decode → grid → resize → normalise as the server.
  ImageInput input;
  if (!image.empty()) {
    auto b = Read(image, "image");
    if (!b.ok()) return Fail(b.status());
    input.grid = std::move(b).value();
  }
  for (size_t i = 0; i < frames.size(); ++i) {
    auto b = Read(frames[i], "frames[" + std::to_string(i) + "]");
    if (!b.ok()) return Fail(b.status());
    input.frames.push_back(std::move(b).value());
  }
  uint32_t width = 0, height = 0;
  auto pv = Gemma3Processor::PreprocessInput(input, size, pan_and_scan, kDefaultImageLimits, &width,
                                             &height);
  if (!pv.ok()) return Fail(pv.status());
  std::ofstream f(out, std::ios::binary);
  f.write(reinterpret_cast<const char*>(pv->values.data()),
          static_cast<std::streamsize>(pv->values.size() * sizeof(float)));
  if (!f) return Fail(InvalidArgumentError(out + ": cannot write"));
  const nlohmann::json line = {
      {"out", out},
      {"dtype", "float32"},
      {"layout", "NCHW"},
      {"shape", {pv->num_images(), 3, size, size}},
      {"num_crops", pv->num_crops},
      {"source", {{"width", width}, {"height", height}, {"frames", frames.size()}}}};
  std::printf("%s\n", line.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
