// vlmserve-generate: one request through the whole model on the CPU reference runner — frames
// or an image, a prompt, the chat template, preprocessing, the vision tower, prefill and decoding —
// printing the text as it is generated and then the timings.
//
//   vlmserve-generate --model DIR (--frames F1 [F2 F3 F4] | --image FILE) --prompt TEXT
//                     [--system TEXT] [--max-new-tokens N] [--temperature T --top-k K --top-p P
//                     --seed S] [--pan-and-scan] [--json]
//
// Greedy unless --temperature > 0. Exit codes: 0 ok, 1 bad model or input, 2 bad usage.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "model/cpu_runner.h"
#include "model/image.h"
#include "model/json_util.h"
#include "model/model_dir.h"
#include "model/preprocess.h"
#include "model/prompt.h"

namespace vlmserve {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "vlmserve-generate: error: %s\n", s.ToString().c_str());
  return 1;
}

StatusOr<RgbImage> LoadImage(const std::string& path, const std::string& what) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileBounded(path, kDefaultImageLimits.max_encoded_bytes));
  return DecodeImage({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                     kDefaultImageLimits, what + " (" + path + ")");
}

double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

int Run(int argc, char** argv) {
  CLI::App app{"vlmserve-generate: run one prompt (with 1-4 frames composed into the 2x2 grid, or "
               "an image) through a Gemma 3 model directory on the CPU reference runner and print "
               "the generated text and the timings."};
  std::string model, image, prompt, system;
  std::vector<std::string> frames;
  int32_t max_new = 64;
  SamplingParams sp;
  bool pan_and_scan = false, as_json = false;
  app.add_option("--model", model, "Model directory: config.json, weights, tokenizer.json")->required();
  auto* img = app.add_option("--image", image, "One image (PNG or JPEG), e.g. a pre-composed grid");
  auto* fr = app.add_option("--frames", frames, "1 to 4 frames of one size, oldest first")->expected(1, 4);
  img->excludes(fr);
  app.add_option("--prompt", prompt, "The user's text")->required();
  app.add_option("--system", system, "System text, folded into the first user turn");
  app.add_option("--max-new-tokens", max_new, "Stop after this many tokens")->default_val(64)
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--temperature", sp.temperature, "0 = greedy (default)")->default_val(0.0f);
  app.add_option("--top-k", sp.top_k, "Keep the k most likely tokens (0 = off)")->default_val(0);
  app.add_option("--top-p", sp.top_p, "Nucleus sampling mass (1 = off)")->default_val(1.0f);
  app.add_option("--seed", sp.seed, "Sampling seed")->default_val(0);
  app.add_flag("--pan-and-scan", pan_and_scan, "Add pan & scan crops of wide or tall images");
  app.add_flag("--json", as_json, "Print one JSON object (text, tokens, timings) instead");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const auto t_load = std::chrono::steady_clock::now();
  auto dir = ModelDir::Load(model);
  if (!dir.ok()) return Fail(dir.status());
  auto runner = CpuModelRunner::Create(*dir->checkpoint, dir->config);
  if (!runner.ok()) return Fail(runner.status());
  const double load_ms = MsSince(t_load);

  // Frames → one image → pixel values (+ crops).
  const auto t_pre = std::chrono::steady_clock::now();
  std::vector<float> pixels;
  int num_crops = 0;
  const bool has_image = !image.empty() || !frames.empty();
  if (has_image) {
    if (!dir->config.has_vision) return Fail(InvalidArgumentError("this model is text-only"));
    RgbImage source;
    if (!image.empty()) {
      auto im = LoadImage(image, "image");
      if (!im.ok()) return Fail(im.status());
      source = std::move(im).value();
    } else {
      std::vector<RgbImage> decoded;
      for (size_t i = 0; i < frames.size(); ++i) {
        auto im = LoadImage(frames[i], "frames[" + std::to_string(i) + "]");
        if (!im.ok()) return Fail(im.status());
        decoded.push_back(std::move(im).value());
      }
      auto grid = ComposeGrid(decoded);
      if (!grid.ok()) return Fail(grid.status());
      source = std::move(grid).value();
    }
    PreprocessOptions po;
    po.size = static_cast<uint32_t>(dir->config.vision.image_size);
    po.pan_and_scan = pan_and_scan;
    auto pv = PreprocessImage(source, po);
    if (!pv.ok()) return Fail(pv.status());
    pixels = std::move(pv->values);
    num_crops = pv->num_crops;
  }
  const double preprocess_ms = MsSince(t_pre);

  std::vector<PromptMessage> messages;
  if (!system.empty()) messages.push_back({Role::kSystem, {PromptPart::Text(system)}});
  PromptMessage user{Role::kUser, {}};
  if (has_image) user.parts.push_back(PromptPart::Image(num_crops));
  user.parts.push_back(PromptPart::Text(prompt));
  messages.push_back(std::move(user));
  auto builder = PromptBuilder::Create(*dir->tokenizer, dir->config.mm_tokens_per_image);
  if (!builder.ok()) return Fail(builder.status());
  auto built = builder->Build(messages);
  if (!built.ok()) return Fail(built.status());

  GenerateOptions go;
  go.sampling = sp;
  go.max_new_tokens = max_new;
  go.stop_ids = dir->generation.stop_ids;
  DecodeStream stream(*dir->tokenizer, /*skip_special_tokens=*/false);
  std::string text;
  auto result = GenerateOne(**runner, 1, *built, pixels, go, [&](int32_t id) {
    const std::string delta = stream.Step(id);
    text += delta;
    if (!as_json) {
      std::fwrite(delta.data(), 1, delta.size(), stdout);
      std::fflush(stdout);
    }
  });
  if (!result.ok()) return Fail(result.status());
  const std::string tail = stream.Flush();
  text += tail;
  const char* finish = result->finish == FinishReason::kStop ? "stop" : "length";
  const double tok_s = result->tokens.size() > 1 && result->decode_ms > 0
                           ? 1000.0 * (result->tokens.size() - 1) / result->decode_ms : 0.0;
  if (as_json) {
    nlohmann::json j = {{"text", text},
                        {"tokens", result->tokens},
                        {"finish_reason", finish},
                        {"prompt_tokens", built->ids.size()},
                        {"images", built->images.size()},
                        {"timings_ms",
                         {{"load", load_ms},
                          {"preprocess", preprocess_ms},
                          {"vision", result->vision_ms},
                          {"prefill", result->prefill_ms},
                          {"first_token", result->first_token_ms},
                          {"decode", result->decode_ms}}}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s\n", tail.c_str());
    std::fflush(stdout);  // the text, then the timings, also when both go to one terminal or pipe
    std::fprintf(stderr,
                 "[%zu prompt tokens, %zu image(s); load %.0f ms, preprocess %.1f ms, vision %.1f ms, "
                 "prefill %.1f ms, first token %.1f ms, %zu tokens decoded in %.1f ms (%.1f tok/s); "
                 "finish: %s]\n",
                 built->ids.size(), built->images.size(), load_ms, preprocess_ms, result->vision_ms,
                 result->prefill_ms, result->first_token_ms, result->tokens.size(), result->decode_ms,
                 tok_s, finish);
  }
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
