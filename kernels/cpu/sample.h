// Token sampling, the reference the CUDA sampler is tested against: one logits row → one token,
// with an optional allowed-token mask, reproducibly.
//   allowed mask: tokens outside it are never returned (applied before everything else)
//   temperature == 0: greedy (argmax over the allowed tokens; ties go to the lowest id, as
//                     torch.argmax)
//   otherwise, in transformers' order: logits / temperature → top-k (keep every token scoring at
//   least the k-th best) → top-p (drop the least likely tokens whose cumulative probability is
//   ≤ 1 − top_p, keeping at least one) → softmax → one draw. Only the prefix of the sorted
//   vocabulary that these read is ever sorted; the softmax's normaliser is summed best first when
//   top-k bounds the kept set, else in id order over all allowed tokens.
// Draws are counter-based: draw number `draw` of a sequence with seed s takes the uniform
// splitmix64(s + (draw + 1) · γ), so a sequence's tokens do not depend on its batch, on which rows
// were sampled before it, or on preemption (a recomputed sequence continues at the same counter).
// The generator is the project's own: the same seed gives the same tokens on every machine,
// though not the tokens PyTorch's generator would draw.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"

namespace vlmserve {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
};

// INVALID_ARGUMENT for NaN/inf/negative temperature, top_p outside (0, 1], top_k outside
// [0, vocab_size].
Status ValidateSamplingParams(const SamplingParams& p, int64_t vocab_size);

// An allowed-token bitmask over the vocabulary: bit (id % 32) of word id / 32. Null = all allowed.
inline bool MaskAllows(const uint32_t* mask, int64_t id) {
  return !mask || ((mask[id >> 5] >> (id & 31)) & 1u);
}
inline size_t MaskWords(int64_t vocab_size) { return static_cast<size_t>((vocab_size + 31) / 32); }

struct SampleResult {
  int32_t token = -1;
  // log p(token) under the model's distribution restricted to the allowed tokens (temperature 1,
  // no top-k/top-p): how sure the model itself was among what it was allowed to say.
  float logprob = 0.f;
  std::vector<std::pair<int32_t, float>> top_logprobs;  // best first, same distribution
};

// INVALID_ARGUMENT when the mask allows no token.
StatusOr<SampleResult> SampleRef(std::span<const float> logits, const SamplingParams& params,
                                 uint64_t draw, const uint32_t* allowed = nullptr,
                                 int32_t top_logprobs = 0);

// A row's best allowed tokens as the device sampler hands them over (kernels/cuda/sample): the
// first ids.size() tokens of SampleRef's ranking (higher logit, lower id on ties) with their
// logits, how many tokens the row allows, and sums over all of them in double: z1 = Σ exp(l − best)
// (the logprob's normaliser) and zt = Σ exp(l/t − best/t) at the row's temperature.
struct RankedPrefix {
  std::span<const int32_t> ids;
  std::span<const float> logits;
  int32_t candidates = 0;
  double z1 = 0, zt = 0;
};

// SampleRef's rules (no top_logprobs) on a prefix: its token and logprob, or nullopt when the
// rules read past the prefix (a flat distribution without top-k; the caller then samples the whole
// row with SampleRef). The same token as SampleRef but where the sums' last bits (another
// summation order) decide.
std::optional<SampleResult> SampleFromPrefix(const RankedPrefix& prefix,
                                             const SamplingParams& params, uint64_t draw);

// The uniform in [0, 1) of draw number `draw` for `seed` (splitmix64 of seed + (draw + 1) · γ).
double SampleUniform(uint64_t seed, uint64_t draw);

// A stateful convenience over SampleRef for one sequence: the n-th call is draw n.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p) {}
  int32_t Sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  uint64_t draw_ = 0;
};

}  // namespace vlmserve
