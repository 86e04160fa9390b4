// GenerateOne: one request, start to finish, on a ModelRunner — images through the vision tower,
// the prompt prefilled, then one token at a time until a stop id or max_new_tokens. The
// single-sequence path of vlmserve-generate; the server's scheduler (batching many sequences)
// builds on the same runner calls.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/sampler.h"
#include "model/model_runner.h"
#include "model/prompt.h"

namespace vlmserve {

struct GenerateOptions {
  SamplingParams sampling;
  int32_t max_new_tokens = 64;
  std::vector<int32_t> stop_ids;  // the stop token ends generation and is not part of the output
};

enum class FinishReason { kStop, kLength };

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids, without the stop id
  FinishReason finish = FinishReason::kLength;
  double vision_ms = 0, prefill_ms = 0, decode_ms = 0;
  double first_token_ms = 0;  // from the start of GenerateOne to the first sampled token
};

// `pixel_values` holds prompt.images.size() images [n, 3, S, S] (full images and crops, in the
// prompt's order). `on_token` (optional) sees each generated id as soon as it is sampled.
StatusOr<GenerateResult> GenerateOne(ModelRunner& runner, SequenceId id, const Prompt& prompt,
                                     std::span<const float> pixel_values, const GenerateOptions& options,
                                     const std::function<void(int32_t)>& on_token = {});

}  // namespace vlmserve
