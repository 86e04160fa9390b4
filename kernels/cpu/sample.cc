// Token sampling (see sample.h).
#include "kernels/cpu/sample.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

namespace vlmserve {

Status ValidateSamplingParams(const SamplingParams& p, int64_t vocab) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return InvalidArgumentError("temperature must be a finite number ≥ 0, got " +
                                std::to_string(p.temperature));
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

double SampleUniform(uint64_t seed, uint64_t draw) {
  uint64_t z = seed + (draw + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

namespace {

// The rules after the ranking (sample.h): top-k, the softmax at the temperature, top-p, the draw;
// returns the drawn token's rank. logit_at(i): the logit of the i-th best allowed token, or
// nullopt when the caller does not know it (a prefix from the device): then nullopt.
// sum_all(t, max): Σ exp(logit/t − max) over every allowed token, used when top-k does not bound
// the kept set (else the kept tokens are summed best first here).
template <typename LogitAt, typename SumAll>
std::optional<int32_t> DrawRank(const LogitAt& logit_at, int32_t candidates, float best_logit,
                                const SumAll& sum_all, const SamplingParams& params,
                                uint64_t draw) {
  int32_t keep = candidates;
  if (params.top_k > 0 && params.top_k < candidates) {
    const std::optional<float> kth = logit_at(params.top_k - 1);
    if (!kth) return std::nullopt;
    keep = params.top_k;
    while (keep < candidates) {  // ties with the k-th stay
      const std::optional<float> l = logit_at(keep);
      if (!l) return std::nullopt;
      if (*l < *kth) break;
      ++keep;
    }
  }
  // Softmax of the scaled scores over the kept candidates (double precision). The normaliser is
  // summed best first when top-k bounds the kept set, over the whole allowed set otherwise (the
  // same sum but for the last bits; no sort of the vocabulary).
  const double t = params.temperature, max = best_logit / t;
  auto weight = [&](float logit) { return std::exp(logit / t - max); };
  double sum = 0;
  if (keep < candidates) {
    for (int32_t i = 0; i < keep; ++i) sum += weight(*logit_at(i));  // read by the loop above
  } else {
    sum = sum_all(t, max);
  }
  std::vector<double> probs;  // of the ranked tokens, computed as far as they are read
  auto prob = [&](int32_t i) -> std::optional<double> {
    while (static_cast<int32_t>(probs.size()) <= i) {
      const std::optional<float> l = logit_at(static_cast<int32_t>(probs.size()));
      if (!l) return std::nullopt;
      probs.push_back(weight(*l) / sum);
    }
    return probs[static_cast<size_t>(i)];
  };
  if (params.top_p < 1.0f) {
    // transformers removes, from the least likely up, tokens whose cumulative probability is
    // ≤ 1 − top_p; equivalently the most likely tokens are kept while the mass before them is
    // < top_p. At least one token stays.
    double before = 0;
    int32_t p_keep = 0;
    while (p_keep < keep && (p_keep == 0 || before < params.top_p)) {
      const std::optional<double> q = prob(p_keep++);
      if (!q) return std::nullopt;
      before += *q;
    }
    keep = p_keep;
    double s = 0;
    for (int32_t i = 0; i < keep; ++i) s += probs[static_cast<size_t>(i)];
    for (int32_t i = 0; i < keep; ++i) probs[static_cast<size_t>(i)] /= s;
  }
  double u = SampleUniform(params.seed, draw);
  for (int32_t i = 0; i < keep; ++i) {
    const std::optional<double> q = prob(i);
    if (!q) return std::nullopt;
    if (u < *q) return i;
    u -= *q;
  }
  if (!logit_at(keep - 1)) return std::nullopt;
  return keep - 1;  // when rounding leaves a sliver of mass
}

}  // namespace

StatusOr<SampleResult> SampleRef(std::span<const float> logits, const SamplingParams& params,
                                 uint64_t draw, const uint32_t* allowed, int32_t top_logprobs) {
  const int32_t n = static_cast<int32_t>(logits.size());
  // One pass: the best allowed token (lowest id on ties) and how many are allowed.
  int32_t best_id = -1, candidates = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (!MaskAllows(allowed, i)) continue;
    ++candidates;
    if (best_id < 0 || logits[i] > logits[best_id]) best_id = i;
  }
  if (candidates == 0) return InvalidArgumentError("the allowed-token mask allows no token");

  // Log-probabilities over the allowed tokens at temperature 1 (double precision).
  const double best = logits[best_id];
  double z = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (MaskAllows(allowed, i)) z += std::exp(static_cast<double>(logits[i]) - best);
  }
  const double log_z = best + std::log(z);
  auto logprob = [&](int32_t id) { return static_cast<float>(logits[id] - log_z); };
  // Higher score first; ties: lower id first (deterministic, as torch.argmax).
  auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };

  // The allowed tokens best first, sorted lazily: a draw, top-k and top-p only ever read a
  // prefix of this order (usually a few dozen tokens), so only that prefix is sorted — not the
  // 262,208 tokens of Gemma's vocabulary on every sampled token (≈ 20 ms).
  std::vector<int32_t> order;
  int32_t sorted = 0;
  auto ranked = [&](int32_t i) {  // the i-th best allowed token
    if (i >= sorted) {
      const int32_t upto = std::min(candidates, std::max({i + 1, 2 * sorted, 64}));
      std::partial_sort(order.begin() + sorted, order.begin() + upto, order.end(), better);
      sorted = upto;
    }
    return order[static_cast<size_t>(i)];
  };
  SampleResult r;
  const bool greedy = params.temperature == 0.0f;
  if (!greedy || top_logprobs > 0) {
    order.reserve(static_cast<size_t>(candidates));
    for (int32_t i = 0; i < n; ++i) {
      if (MaskAllows(allowed, i)) order.push_back(i);
    }
    for (int32_t i = 0; i < std::min(top_logprobs, candidates); ++i) {
      r.top_logprobs.emplace_back(ranked(i), logprob(ranked(i)));
    }
  }
  if (greedy) {
    r.token = best_id;
    r.logprob = logprob(r.token);
    return r;
  }
  const std::optional<int32_t> rank =
      DrawRank([&](int32_t i) -> std::optional<float> { return logits[ranked(i)]; }, candidates,
               logits[best_id],
               [&](double t, double max) {  // every allowed token, in id order
                 double sum = 0;
                 for (int32_t id = 0; id < n; ++id) {
                   if (MaskAllows(allowed, id)) sum += std::exp(logits[id] / t - max);
                 }
                 return sum;
               },
               params, draw);
  r.token = ranked(*rank);  // SampleRef knows every candidate's rank: always a token
  r.logprob = logprob(r.token);
  return r;
}

std::optional<SampleResult> SampleFromPrefix(const RankedPrefix& p, const SamplingParams& params,
                                             uint64_t draw) {
  const int32_t known = static_cast<int32_t>(p.ids.size());
  if (known == 0 || p.candidates < known || p.logits.size() != p.ids.size() || !(p.z1 > 0) ||
      (params.temperature != 0.0f && !(p.zt > 0))) {
    return std::nullopt;
  }
  std::optional<int32_t> rank = 0;  // greedy: the best
  if (params.temperature != 0.0f) {
    rank = DrawRank(
        [&](int32_t i) -> std::optional<float> {
          if (i >= known) return std::nullopt;
          return p.logits[static_cast<size_t>(i)];
        },
        p.candidates, p.logits[0], [&](double, double) { return p.zt; }, params, draw);
  }
  if (!rank) return std::nullopt;
  SampleResult r;
  r.token = p.ids[static_cast<size_t>(*rank)];
  r.logprob = static_cast<float>(p.logits[static_cast<size_t>(*rank)] -
                                 (static_cast<double>(p.logits[0]) + std::log(p.z1)));
  return r;
}

int32_t Sampler::Sample(std::span<const float> logits) {
  auto r = SampleRef(logits, params_, draw_++);
  return r.ok() ? r->token : -1;  // no mask: never an error
}

}  // namespace vlmserve
