// vlmserve-generate: one request through the whole model — frames or an image, a prompt, the chat
// template, preprocessing, the vision tower, prefill and decoding — on the same engine path as the
// server (ServeEngine::RunNow), printing the text as it is generated and then the timings.
//
//   vlmserve-generate --model DIR (--frames F1 [F2 F3 F4] | --image FILE) --prompt TEXT
//                     [--system TEXT] [--max-new-tokens N] [--temperature T --top-k K --top-p P
//                     --seed S] [--pan-and-scan] [--device cpu|cuda|auto] [--json]
//                     [--output-mode action|text] [--allowed-buttons a,b] [--action-schema FILE]
//                     [--no-jump-forward]
//
// Greedy unless --temperature > 0. The default output is one action object of the default schema
// (as the server's); --output-mode text gives free text. Exit codes: 0 ok, 1 bad model or input, 2 bad usage.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/json_util.h"
#include "engine/serve_engine.h"

namespace vlmserve {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "vlmserve-generate: error: %s\n", s.ToString().c_str());
  return 1;
}

StatusOr<ImageBytes> ReadImage(const std::string& path, const std::string& what) {
  ImageBytes b;
  b.name = what + " (" + path + ")";  // decoding errors name the file
  auto bytes = ReadFileBounded(path, kDefaultImageLimits.max_encoded_bytes);
  if (!bytes.ok()) return bytes.status().WithPrefix(b.name);
  b.bytes = std::move(bytes).value();
  return b;
}

double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Prints each delta as it comes (text mode).
class PrintingSink : public ResponseSink {
 public:
  explicit PrintingSink(bool print) : print_(print) {}
  void OnDelta(OutputDelta d) override {
    if (!print_) return;
    std::fwrite(d.text.data(), 1, d.text.size(), stdout);
    std::fflush(stdout);
  }
  void OnResult(ServeResult) override {}
  void OnError(Status) override {}

 private:
  bool print_;
};

int Run(int argc, char** argv) {
  CLI::App app{
      "vlmserve-generate: run one prompt (with 1-4 frames composed into the 2x2 grid, or "
      "an image) through a Gemma 3 model directory — by default on the CPU reference "
      "runner — and print the generated text and the timings."};
  std::string model, image, prompt, system, device = "cpu";
  std::vector<std::string> frames;
  int32_t max_new = 64;
  SamplingParams sp;
  bool pan_and_scan = false, as_json = false, no_jump_forward = false;
  std::string output_mode = "action", schema_file;
  std::vector<std::string> allowed_buttons;
  app.add_option("--model", model, "Model directory: config.json, weights, tokenizer.json")
      ->required();
  std::string adapter;
  app.add_option("--adapter", adapter,
                 "PEFT LoRA adapter directory merged into the weights at load (as vlmserve)");
  auto* img = app.add_option("--image", image, "One image (PNG or JPEG), e.g. a pre-composed grid");
  auto* fr =
      app.add_option("--frames", frames, "1 to 4 frames of one size, oldest first")->expected(1, 4);
  img->excludes(fr);
  app.add_option("--prompt", prompt, "The user's text")->required();
  app.add_option("--system", system, "System text, folded into the first user turn");
  app.add_option("--max-new-tokens", max_new, "Stop after this many tokens")
      ->default_val(64)
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--temperature", sp.temperature, "0 = greedy (default)")->default_val(0.0f);
  app.add_option("--top-k", sp.top_k, "Keep the k most likely tokens (0 = off)")->default_val(0);
  app.add_option("--top-p", sp.top_p, "Nucleus sampling mass (1 = off)")->default_val(1.0f);
  app.add_option("--seed", sp.seed, "Sampling seed")->default_val(0);
  app.add_flag("--pan-and-scan", pan_and_scan, "Add pan & scan crops of wide or tall images");
  app.add_option("--device", device, "Runner: cpu (the reference), cuda, or auto")
      ->default_val("cpu")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--output-mode", output_mode,
                 "action: one JSON action of the schema (default); text: free text")
      ->default_val("action")
      ->check(CLI::IsMember({"action", "text"}));
  app.add_option("--allowed-buttons", allowed_buttons,
                 "Action mode: only these buttons of the default schema (comma-separated)")
      ->delimiter(',');
  app.add_option("--action-schema", schema_file,
                 "Action mode: a JSON Schema file for the action instead of the default");
  app.add_flag("--no-jump-forward", no_jump_forward,
               "Sample every token of the action instead of appending forced text");
  app.add_flag("--json", as_json, "Print one JSON object (text, tokens, timings) instead");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const auto t_load = std::chrono::steady_clock::now();
  EngineOptions eo;
  eo.max_context_tokens = 0;  // the model's own limit
  eo.jump_forward = !no_jump_forward;
  eo.adapter_dir = adapter;
  if (device == "cuda") {
    std::fprintf(stderr,
                 "vlmserve-generate: warning: the CUDA runner has not yet passed its GPU check "
                 "(issue 25); its answers are unverified\n");
  }
  auto engine = ServeEngine::Load(model, device, eo);
  if (!engine.ok()) return Fail(engine.status());
  const double load_ms = MsSince(t_load);

  ServeRequest r;
  r.request_id = "generate";
  if (!image.empty()) {
    auto b = ReadImage(image, "image");
    if (!b.ok()) return Fail(b.status());
    r.images.grid = std::move(b).value();
  }
  for (size_t i = 0; i < frames.size(); ++i) {
    auto b = ReadImage(frames[i], "frames[" + std::to_string(i) + "]");
    if (!b.ok()) return Fail(b.status());
    r.images.frames.push_back(std::move(b).value());
  }
  r.prompt = prompt;
  r.system_prompt = system;
  r.max_new_tokens = max_new;
  r.sampling = sp;
  r.pan_and_scan = pan_and_scan;
  r.output_mode = output_mode == "text" ? OutputMode::kText : OutputMode::kAction;
  r.allowed_buttons = allowed_buttons;
  if (!schema_file.empty()) {
    auto text = ReadFileBounded(schema_file, 1 << 20);
    if (!text.ok()) return Fail(text.status().WithPrefix("--action-schema"));
    r.action_schema = std::move(text).value();
  }
  PrintingSink sink(!as_json);
  auto result = (*engine)->RunNow(r, &sink);
  if (!result.ok()) return Fail(result.status());
  const ServeTimings& t = result->timings;
  auto ms = [](int64_t us) { return us / 1000.0; };
  const char* finish = result->finish == FinishReason::kStop ? "stop" : "length";
  const double tok_s = result->tokens.size() > 1 && t.decode_us > 0
                           ? 1e6 * (result->tokens.size() - 1) / t.decode_us
                           : 0.0;
  if (as_json) {
    nlohmann::json j = {{"text", result->text},
                        {"tokens", result->tokens},
                        {"finish_reason", finish},
                        {"prompt_tokens", result->prompt_tokens},
                        {"images", result->images},
                        {"forced_tokens", result->forced_tokens},
                        {"sampled_tokens", result->sampled_tokens},
                        {"device", (*engine)->info().device},
                        {"timings_ms",
                         {{"load", load_ms},
                          {"preprocess", ms(t.preprocess_us)},
                          {"vision", ms(t.vision_us)},
                          {"prefill", ms(t.prefill_us)},
                          {"first_token", ms(t.first_token_us)},
                          {"decode", ms(t.decode_us)}}}};
    if (r.output_mode == OutputMode::kAction) {
      j["action"] = {{"fields", result->action.fields},
                     {"confidence", result->action.confidence},
                     {"logprob", result->action.logprob}};
    }
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("\n");
    std::fflush(stdout);  // the text, then the timings, also when both go to one terminal or pipe
    std::fprintf(stderr,
                 "[%d prompt tokens, %d image(s); load %.0f ms, preprocess %.1f ms, vision %.1f "
                 "ms, prefill %.1f ms, first token %.1f ms, %zu tokens decoded in %.1f ms (%.1f "
                 "tok/s); finish: %s]\n",
                 result->prompt_tokens, result->images, load_ms, ms(t.preprocess_us),
                 ms(t.vision_us), ms(t.prefill_us), ms(t.first_token_us), result->tokens.size(),
                 ms(t.decode_us), tok_s, finish);
  }
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
