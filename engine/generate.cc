// Single-sequence generation (see generate.h).
#include "engine/generate.h"

#include <algorithm>
#include <chrono>

namespace vlmserve {
namespace {

double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Releases the runner's sequence however GenerateOne ends.
struct SequenceGuard {
  ModelRunner& runner;
  SequenceId id;
  ~SequenceGuard() { runner.Release(id); }
};

}  // namespace

StatusOr<GenerateResult> GenerateOne(ModelRunner& runner, SequenceId id, const Prompt& prompt,
                                     std::span<const float> pixel_values, const GenerateOptions& opt,
                                     const std::function<void(int32_t)>& on_token) {
  const Gemma3Config& c = runner.config();
  RETURN_IF_ERROR(ValidateSamplingParams(opt.sampling, c.text.vocab_size));
  if (opt.max_new_tokens < 1) return InvalidArgumentError("max_new_tokens must be at least 1");
  const int64_t n_images = static_cast<int64_t>(prompt.images.size());
  GenerateResult r;
  const auto start = std::chrono::steady_clock::now();

  std::vector<float> soft;
  if (n_images > 0) {
    ASSIGN_OR_RETURN(soft, runner.EncodeImages(pixel_values, n_images));
  } else if (!pixel_values.empty()) {
    return InvalidArgumentError("images given but the prompt has no image");
  }
  r.vision_ms = MsSince(start);

  auto t = std::chrono::steady_clock::now();
  PrefillRequest pre{id, prompt.ids, prompt.token_type_ids, soft, false};
  ASSIGN_OR_RETURN(auto logits, runner.Prefill(std::span<const PrefillRequest>(&pre, 1)));
  SequenceGuard guard{runner, id};
  r.prefill_ms = MsSince(t);

  Sampler sampler(opt.sampling);
  t = std::chrono::steady_clock::now();
  for (int32_t step = 0; step < opt.max_new_tokens; ++step) {
    const int32_t token = sampler.Sample(logits[0]);
    if (step == 0) r.first_token_ms = MsSince(start);
    if (std::find(opt.stop_ids.begin(), opt.stop_ids.end(), token) != opt.stop_ids.end()) {
      r.finish = FinishReason::kStop;
      break;
    }
    r.tokens.push_back(token);
    if (on_token) on_token(token);
    if (step + 1 == opt.max_new_tokens) break;  // no need to run the model for a token not used
    const std::pair<SequenceId, int32_t> next{id, token};
    ASSIGN_OR_RETURN(logits, runner.Decode(std::span<const std::pair<SequenceId, int32_t>>(&next, 1)));
  }
  r.decode_ms = MsSince(t);
  return r;
}

}  // namespace vlmserve
