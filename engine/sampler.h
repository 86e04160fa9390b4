// Sampler: picks the next token from a logits row, reproducibly.
//   temperature == 0: greedy (argmax; ties go to the lowest id, as torch.argmax)
//   otherwise, in transformers' order: logits / temperature → top-k (keep every token scoring at
//   least the k-th best) → top-p (drop the least likely tokens whose cumulative probability is
//   ≤ 1 − top_p, keeping at least one) → softmax → one draw from a seeded generator.
// The generator (splitmix64) is the sampler's own: the same seed gives the same tokens on every
// machine, though not the tokens PyTorch's generator would draw.
#pragma once

#include <cstdint>
#include <span>
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

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), state_(p.seed) {}
  int32_t Sample(std::span<const float> logits);

 private:
  double NextUniform();  // [0, 1)
  SamplingParams params_;
  uint64_t state_;
  std::vector<int32_t> order_;  // scratch
  std::vector<double> probs_;
};

}  // namespace vlmserve
