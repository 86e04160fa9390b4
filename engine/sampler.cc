// Token sampling (see sampler.h).
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vlmserve {

Status ValidateSamplingParams(const SamplingParams& p, int64_t vocab) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return InvalidArgumentError("temperature must be a finite number ≥ 0, got " + std::to_string(p.temperature));
  }
  if (!std::isfinite(p.top_p) || p.top_p <= 0 || p.top_p > 1) {
    return InvalidArgumentError("top_p must be in (0, 1], got " + std::to_string(p.top_p));
  }
  if (p.top_k < 0 || p.top_k > vocab) {
    return InvalidArgumentError("top_k must be in [0, " + std::to_string(vocab) + "], got " +
                                std::to_string(p.top_k));
  }
  return Status::Ok();
}

double Sampler::NextUniform() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int32_t Sampler::Sample(std::span<const float> logits) {
  const int32_t n = static_cast<int32_t>(logits.size());
  if (params_.temperature == 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates sorted by score, best first (ties: lower id first, so the result is deterministic).
  order_.resize(static_cast<size_t>(n));
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  int32_t keep = n;
  if (params_.top_k > 0 && params_.top_k < n) {
    const float kth = logits[order_[params_.top_k - 1]];
    keep = params_.top_k;
    while (keep < n && logits[order_[keep]] >= kth) ++keep;  // ties with the k-th stay
  }
  // Softmax of the scaled scores over the kept candidates (double precision).
  probs_.resize(static_cast<size_t>(keep));
  const double t = params_.temperature, max = logits[order_[0]] / t;
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) sum += probs_[i] = std::exp(logits[order_[i]] / t - max);
  for (int32_t i = 0; i < keep; ++i) probs_[i] /= sum;
  if (params_.top_p < 1.0f) {
    // transformers removes, from the least likely up, tokens whose cumulative probability is
    // ≤ 1 − top_p; equivalently the most likely tokens are kept while the mass before them is
    // < top_p. At least one token stays.
    double before = 0;
    int32_t p_keep = 0;
    while (p_keep < keep && (p_keep == 0 || before < params_.top_p)) before += probs_[p_keep++];
    keep = p_keep;
    double s = 0;
    for (int32_t i = 0; i < keep; ++i) s += probs_[i];
    for (int32_t i = 0; i < keep; ++i) probs_[i] /= s;
  }
  double u = NextUniform();
  for (int32_t i = 0; i < keep; ++i) {
    if (u < probs_[i]) return order_[i];
    u -= probs_[i];
  }
  return order_[keep - 1];  // rounding left a sliver of mass
}

}  // namespace vlmserve
