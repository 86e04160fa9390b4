// vlmserve-dump: what a runner computes for one prompt given as ids and pixels, written for
// Python to compare with transformers (tools/fidelity/): the fidelity check of issue 25.
//
//   vlmserve-dump --model DIR --inputs DIR [--device cpu|cuda] [--new-tokens 16] [--chunk N]
//                 --out DIR
//
// Inputs (written by tools/fidelity/reference.py): inputs.json {"input_ids": [...],
// "token_types": [... 1 on image soft tokens]} and pixels.safetensors {"pixel_values":
// F32 [n, 3, S, S]} — ids, not text, so no tokenizer is needed (the model directory may hold only
// config.json and the weights). Outputs in --out:
//   ours.safetensors  soft_tokens F32 [n, mm_tokens_per_image, D] (EncodeImages, read back),
//                     logits F32 [prompt tokens, vocab] (every prompt position, one Step row per
//                     prefill chunk, LogitsMode::kAll)
//   ours.json         greedy: the next --new-tokens greedy ids (sampled inside the runner, one
//                     decode row per step), device, timings (load, vision, prefill, decode)
// Exit codes: 0 ok, 1 bad model or input, 2 bad usage.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/json_util.h"
#include "engine/kv_manager.h"
#include "engine/serve_engine.h"
#include "model/runner_factory.h"
#include "model/weights/config_json.h"
#include "model/weights/safetensors.h"

namespace vlmserve {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Inputs {
  std::vector<int32_t> ids;
  std::vector<uint8_t> types;
  std::vector<float> pixels;
  int64_t images = 0;
};

StatusOr<Inputs> ReadInputs(const fs::path& dir, const Gemma3Config& config) {
  Inputs in;
  ASSIGN_OR_RETURN(std::string text, ReadFileBounded((dir / "inputs.json").string(), 64 << 20));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("input_ids") || !j.contains("token_types")) {
    return InvalidArgumentError("inputs.json needs input_ids and token_types arrays");
  }
  try {
    in.ids = j["input_ids"].get<std::vector<int32_t>>();
    in.types = j["token_types"].get<std::vector<uint8_t>>();
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(std::string("inputs.json: ") + e.what());
  }
  if (in.ids.empty() || in.ids.size() != in.types.size()) {
    return InvalidArgumentError("inputs.json: input_ids and token_types must be non-empty and equal in length");
  }
  int64_t soft = 0;
  for (uint8_t t : in.types) soft += t == 1;
  if (soft % config.mm_tokens_per_image != 0) {
    return InvalidArgumentError("inputs.json: image tokens are not whole images");
  }
  in.images = soft / config.mm_tokens_per_image;
  if (in.images == 0) return in;
  ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open((dir / "pixels.safetensors").string()));
  for (const TensorEntry& t : file->header().tensors) {
    if (t.name != "pixel_values") continue;
    const int64_t S = config.vision.image_size;
    if (t.dtype != DType::kF32 || t.shape != std::vector<int64_t>{in.images, 3, S, S}) {
      return InvalidArgumentError("pixels.safetensors: pixel_values must be F32 [" +
                                  std::to_string(in.images) + ", 3, " + std::to_string(S) + ", " +
                                  std::to_string(S) + "]");
    }
    const auto bytes = file->Data(t);
    in.pixels.resize(t.numel());
    std::memcpy(in.pixels.data(), bytes.data(), bytes.size());
    return in;
  }
  return InvalidArgumentError("pixels.safetensors has no pixel_values");
}

std::span<const uint8_t> AsBytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

int Run(int argc, char** argv) {
  CLI::App app{
      "vlmserve-dump: run a prompt given as ids and pixels (tools/fidelity/reference.py writes "
      "them) through a runner and write its soft tokens, the logits at every prompt position and "
      "greedy tokens for comparison with transformers (tools/fidelity/compare.py)."};
  std::string model_dir, inputs_dir, out_dir, device = "cpu";
  int new_tokens = 16;
  int64_t chunk = 0;
  app.add_option("--model", model_dir, "Model directory: config.json and the weights")->required();
  app.add_option("--inputs", inputs_dir, "Directory with inputs.json and pixels.safetensors")->required();
  app.add_option("--out", out_dir, "Where ours.safetensors and ours.json go")->required();
  app.add_option("--device", device, "Runner: cpu (the reference) or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--new-tokens", new_tokens, "Greedy tokens after the prompt")->check(CLI::Range(0, 4096));
  app.add_option("--chunk", chunk, "Prefill chunk size in tokens (0 = the whole prompt in one row)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  CLI11_PARSE(app, argc, argv);
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "vlmserve-dump: error: %s\n", s.ToString().c_str());
    return 1;
  };

  const auto t_load = Clock::now();
  ModelDir model;  // config and weights only: the prompt arrives as ids
  model.path = model_dir;
  auto config = LoadGemma3Config((fs::path(model_dir) / "config.json").string());
  if (!config.ok()) return fail(config.status());
  model.config = *config;
  auto ck = Checkpoint::Open(model_dir, model.config);
  if (!ck.ok()) return fail(ck.status());
  model.checkpoint = std::move(ck).value();
  auto in = ReadInputs(inputs_dir, model.config);
  if (!in.ok()) return fail(in.status());
  RunnerOptions ro;
  ro.kv_cache_tokens = static_cast<int64_t>(in->ids.size()) + new_tokens + 64;
  auto runner_or = CreateModelRunner(model, device, ro);
  if (!runner_or.ok()) return fail(runner_or.status());
  ModelRunner& runner = **runner_or;
  const double load_ms = MsSince(t_load);

  nlohmann::json report = {{"device", runner.device()}, {"prompt_tokens", in->ids.size()},
                           {"images", in->images}};
  std::vector<float> soft;
  ImageHandle handle = 0;
  double vision_ms = 0;
  if (in->images > 0) {
    const auto t = Clock::now();
    auto h = runner.EncodeImages(in->pixels, in->images);
    if (!h.ok()) return fail(h.status());
    vision_ms = MsSince(t);
    handle = *h;
    auto s = runner.ReadImages(handle);
    if (!s.ok()) return fail(s.status());
    soft = std::move(s).value();
  }

  // One sequence through Step as the engine drives it: pages from a KvManager, prefill chunks that
  // never split an image, then one decode row per greedy token.
  const Gemma3Config& c = runner.config();
  KvManager kv(runner.kv_pages(), c.text.sliding_window,
               c.text.NumLayersOfType(LayerType::kFullAttention) > 0,
               c.text.NumLayersOfType(LayerType::kSlidingAttention) > 0);
  constexpr SequenceId kSeq = 1;
  uint64_t draws = 0;
  auto step = [&](StepRow row) -> StatusOr<StepOutput> {
    row.sequence = kSeq;
    row.start = kv.length(kSeq);
    row.draw = draws;
    RETURN_IF_ERROR(kv.Grow(kSeq, row.start + static_cast<int64_t>(row.tokens.size())));
    row.full_table = kv.full_table(kSeq);
    row.sliding_table = kv.sliding_table(kSeq);
    ASSIGN_OR_RETURN(auto out, runner.Step(std::span<const StepRow>(&row, 1)));
    if (row.sample) ++draws;
    kv.ReleaseBeforeWindow(kSeq, row.start + static_cast<int64_t>(row.tokens.size()));
    return std::move(out[0]);
  };

  std::vector<float> logits;
  int32_t next = -1;
  int64_t image = 0;
  const auto t_prefill = Clock::now();
  for (const auto& [b, e] : PrefillChunks(in->types, chunk)) {
    StepRow row;
    row.tokens = std::span<const int32_t>(in->ids).subspan(b, e - b);
    row.token_types = std::span<const uint8_t>(in->types).subspan(b, e - b);
    std::vector<ImageRef> refs;
    for (int64_t i = b; i < e; ++i) {
      if (in->types[i] == 1 && (i == b || in->types[i - 1] != 1)) refs.push_back({handle, image++});
    }
    row.images = refs;
    row.sample = e == static_cast<int64_t>(in->ids.size());
    row.logits = LogitsMode::kAll;
    auto out = step(row);
    if (!out.ok()) return fail(out.status());
    logits.insert(logits.end(), out->logits.begin(), out->logits.end());
    next = out->token;
  }
  const double prefill_ms = MsSince(t_prefill);
  if (handle) runner.ReleaseImages(handle);

  std::vector<int32_t> greedy;
  const auto t_decode = Clock::now();
  for (int i = 0; i < new_tokens; ++i) {
    greedy.push_back(next);
    if (i + 1 == new_tokens) break;
    StepRow row;
    row.tokens = std::span<const int32_t>(&greedy.back(), 1);
    auto out = step(row);
    if (!out.ok()) return fail(out.status());
    next = out->token;
  }
  const double decode_ms = MsSince(t_decode);

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  const int64_t T = static_cast<int64_t>(in->ids.size());
  std::vector<TensorToWrite> tensors;
  if (!soft.empty()) {
    tensors.push_back({"soft_tokens", DType::kF32,
                       {in->images, c.mm_tokens_per_image, c.text.hidden_size}, AsBytes(soft)});
  }
  tensors.push_back({"logits", DType::kF32, {T, c.text.vocab_size}, AsBytes(logits)});
  if (Status s = WriteSafetensors((fs::path(out_dir) / "ours.safetensors").string(), tensors);
      !s.ok()) {
    return fail(s);
  }
  report["greedy"] = greedy;
  report["timings_ms"] = {{"load", load_ms},
                          {"vision", vision_ms},
                          {"prefill", prefill_ms},
                          {"decode", decode_ms},
                          {"decode_steps", std::max(0, new_tokens - 1)}};
  std::ofstream(fs::path(out_dir) / "ours.json") << report.dump(1) << "\n";
  std::printf("vlmserve-dump: %s, %lld prompt tokens, %lld image(s): load %.0f ms, vision %.1f ms, "
              "prefill %.1f ms, %d greedy tokens → %s\n",
              runner.device(), static_cast<long long>(T), static_cast<long long>(in->images),
              load_ms, vision_ms, prefill_ms, new_tokens, out_dir.c_str());
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
