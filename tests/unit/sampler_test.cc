// Sampling (kernels/cpu/sample.h, the reference): greedy, reproducibility, counter-based draws,
// the empirical distribution against the softmax it should follow (chi-square with a fixed seed,
// so the test is deterministic) with top-k, top-p and an allowed-token mask, logprobs, and the
// mask brute-forced over a whole vocabulary.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "kernels/cpu/sample.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

TEST(SamplerTest, GreedyIsArgmaxLowestIdOnTies) {
  Sampler s({});
  EXPECT_EQ(s.Sample(std::vector<float>{0.f, 3.f, 1.f, 3.f}), 1);
  EXPECT_EQ(s.Sample(std::vector<float>{-5.f}), 0);
}

TEST(SamplerTest, SameSeedSameTokensOtherSeedOthers) {
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  auto draw = [&](uint64_t seed) {
    Sampler s({1.0f, 0, 1.0f, seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.Sample(logits));
    return out;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

// Pearson's chi-square of `n` draws against `expected` probabilities (zero-probability tokens must
// never be drawn).
double ChiSquare(const SamplingParams& p, const std::vector<float>& logits,
                 const std::vector<double>& expected, int n) {
  Sampler s(p);
  std::map<int32_t, int> counts;
  for (int i = 0; i < n; ++i) ++counts[s.Sample(logits)];
  double chi2 = 0;
  for (size_t t = 0; t < expected.size(); ++t) {
    const double e = expected[t] * n, o = counts[static_cast<int32_t>(t)];
    if (expected[t] == 0) {
      EXPECT_EQ(o, 0) << "token " << t << " must never be drawn";
      continue;
    }
    chi2 += (o - e) * (o - e) / e;
  }
  return chi2;
}

std::vector<double> Softmax(const std::vector<float>& l, double t, const std::vector<bool>& keep) {
  std::vector<double> p(l.size());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += p[i] = keep[i] ? std::exp(l[i] / t) : 0.0;
  for (double& v : p) v /= sum;
  return p;
}

TEST(SamplerTest, DistributionMatchesTheSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f};
  const std::vector<bool> all(5, true);
  // 5 tokens → 4 degrees of freedom: the 99.9th percentile of chi-square is 18.5.
  EXPECT_LT(ChiSquare({1.0f, 0, 1.0f, 1}, logits, Softmax(logits, 1.0, all), 200000), 18.5);
  EXPECT_LT(ChiSquare({2.0f, 0, 1.0f, 2}, logits, Softmax(logits, 2.0, all), 200000), 18.5);
  // top-k 2: only tokens 4 and 1, renormalised (1 degree of freedom: 10.8).
  EXPECT_LT(ChiSquare({1.0f, 2, 1.0f, 3}, logits,
                      Softmax(logits, 1.0, {false, true, false, false, true}), 100000),
            10.8);
  // top-p 0.8 on softmax(logits) = [.086 .234 .052 .012 .636]: keep 4 (.636), then 1 (mass before
  // .636 < .8), then stop (mass before .87 ≥ .8).
  EXPECT_LT(ChiSquare({1.0f, 0, 0.8f, 4}, logits,
                      Softmax(logits, 1.0, {false, true, false, false, true}), 100000),
            10.8);
}

// Draws are counter-based: draw n of a seed is the same whatever happened before it, and the
// stateful Sampler's n-th call is draw n.
TEST(SamplerTest, DrawsAreCounterBased) {
  const std::vector<float> logits = {0.1f, 0.9f, 0.3f, 0.4f, 1.5f, 0.6f, 0.7f, 0.8f};
  const SamplingParams p{1.0f, 0, 1.0f, 99};
  Sampler s(p);
  std::vector<int32_t> stateful;
  for (int i = 0; i < 100; ++i) stateful.push_back(s.Sample(logits));
  for (int i = 99; i >= 0; --i) {  // any order
    auto r = SampleRef(logits, p, static_cast<uint64_t>(i));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->token, stateful[static_cast<size_t>(i)]) << "draw " << i;
  }
  EXPECT_NE(SampleUniform(99, 0), SampleUniform(99, 1));
  EXPECT_NE(SampleUniform(99, 0), SampleUniform(100, 0));
}

// Logprobs are log-softmax at temperature 1 over the allowed tokens, whatever the sampling
// temperature; top logprobs are the best allowed tokens, best first.
TEST(SamplerTest, LogprobsAreTheRestrictedSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.0f};
  std::vector<uint32_t> mask(1, 0);
  for (int id : {0, 1, 3, 5}) mask[0] |= 1u << id;
  auto r = SampleRef(logits, {0.7f, 0, 1.0f, 5}, 0, mask.data(), 3);
  ASSERT_TRUE(r.ok());
  double z = 0;
  for (int id : {0, 1, 3, 5}) z += std::exp(static_cast<double>(logits[id]));
  EXPECT_NEAR(r->logprob, logits[r->token] - std::log(z), 1e-6);
  ASSERT_EQ(r->top_logprobs.size(), 3u);
  EXPECT_EQ(r->top_logprobs[0].first, 1);  // 2.0, tie with 5: the lower id first
  EXPECT_EQ(r->top_logprobs[1].first, 5);
  EXPECT_EQ(r->top_logprobs[2].first, 0);
  EXPECT_NEAR(r->top_logprobs[0].second, 2.0 - std::log(z), 1e-6);
  auto greedy = SampleRef(logits, {}, 0, mask.data(), 1);
  EXPECT_EQ(greedy->token, 1);
  EXPECT_EQ(greedy->top_logprobs[0].first, 1);
}

// Brute force over a vocabulary (the tiny models' 1216 ids, every one): a mask allowing only id t
// returns t, greedy and sampled. Then, on a Gemma-sized vocabulary, the word edges and random
// masks: never a disallowed id.
TEST(SamplerTest, MaskedSamplingNeverReturnsADisallowedId) {
  uint64_t x = 12345;
  auto random_logits = [&x](int64_t vocab) {
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (float& l : logits) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      l = static_cast<float>(static_cast<int64_t>(x >> 40) % 2000) / 100.0f;
    }
    return logits;
  };
  auto only = [](int64_t vocab, std::initializer_list<int64_t> ids) {
    std::vector<uint32_t> mask(MaskWords(vocab), 0);
    for (int64_t id : ids) mask[static_cast<size_t>(id >> 5)] |= 1u << (id & 31);
    return mask;
  };
  const std::vector<float> tiny = random_logits(1216);
  for (int64_t id = 0; id < 1216; ++id) {
    const std::vector<uint32_t> mask = only(1216, {id});
    for (float temperature : {0.0f, 1.0f}) {
      const SamplingParams p{temperature, static_cast<int32_t>(id % 3), id % 2 ? 0.5f : 1.0f,
                             static_cast<uint64_t>(id)};
      auto r = SampleRef(tiny, p, static_cast<uint64_t>(id), mask.data());
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->token, id);
      EXPECT_EQ(r->logprob, 0.f);  // the only allowed token: probability 1
    }
  }
  const int64_t vocab = 262208;
  const std::vector<float> logits = random_logits(vocab);
  for (int64_t id :
       {int64_t{0}, int64_t{31}, int64_t{32}, int64_t{262143}, int64_t{262144}, int64_t{262207}}) {
    EXPECT_EQ(SampleRef(logits, {1.0f, 0, 1.0f, 1}, 0, only(vocab, {id}).data())->token, id);
  }
  for (int trial = 0; trial < 60; ++trial) {
    std::vector<uint32_t> mask(MaskWords(vocab), 0);
    for (int k = 0; k < 1 + trial % 50; ++k) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const int64_t id = static_cast<int64_t>(x >> 33) % vocab;
      mask[static_cast<size_t>(id >> 5)] |= 1u << (id & 31);
    }
    const SamplingParams p{trial % 3 ? 1.3f : 0.0f, trial % 4 == 1 ? 5 : 0,
                           trial % 5 == 2 ? 0.5f : 1.0f, static_cast<uint64_t>(trial)};
    auto r = SampleRef(logits, p, static_cast<uint64_t>(trial), mask.data(), 2);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(MaskAllows(mask.data(), r->token)) << "trial " << trial;
    for (const auto& [id, lp] : r->top_logprobs) EXPECT_TRUE(MaskAllows(mask.data(), id));
  }
  const std::vector<uint32_t> none(MaskWords(vocab), 0);
  EXPECT_EQ(SampleRef(logits, {}, 0, none.data()).status().code(), StatusCode::kInvalidArgument);
}

// With a mask, draws follow the softmax restricted to the allowed tokens.
TEST(SamplerTest, MaskedDistributionMatchesTheRestrictedSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f};
  const std::vector<bool> keep = {true, false, true, true, false};
  uint32_t mask = 0b01101;
  std::map<int32_t, int> counts;
  const int n = 100000;
  for (int i = 0; i < n; ++i) ++counts[SampleRef(logits, {1.0f, 0, 1.0f, 6}, i, &mask)->token];
  const std::vector<double> expected = Softmax(logits, 1.0, keep);
  double chi2 = 0;
  for (int t = 0; t < 5; ++t) {
    if (!keep[t]) {
      EXPECT_EQ(counts[t], 0);
      continue;
    }
    const double e = expected[t] * n;
    chi2 += (counts[t] - e) * (counts[t] - e) / e;
  }
  EXPECT_LT(chi2, 13.8);  // 2 degrees of freedom: the 99.9th percentile
}

// The rules of sample.h written the plain way — every allowed token sorted, probabilities of all
// kept tokens computed up front — against SampleRef, which sorts only the prefix it reads: the
// same token and logprob bit for bit, over vocabularies with many tied logits (bf16-like),
// masks, temperatures, top-k (with ties at the k-th), top-p and draws.
SampleResult PlainSample(const std::vector<float>& l, const SamplingParams& p, uint64_t draw,
                         const uint32_t* mask) {
  const int32_t n = static_cast<int32_t>(l.size());
  std::vector<int32_t> order;
  for (int32_t i = 0; i < n; ++i)
    if (MaskAllows(mask, i)) order.push_back(i);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  const int32_t candidates = static_cast<int32_t>(order.size());
  double z = 0;
  for (int32_t i = 0; i < n; ++i)
    if (MaskAllows(mask, i)) z += std::exp(static_cast<double>(l[i]) - l[order[0]]);
  const double log_z = l[order[0]] + std::log(z);
  int32_t keep = candidates;
  if (p.top_k > 0 && p.top_k < candidates) {
    keep = p.top_k;
    while (keep < candidates && l[order[keep]] >= l[order[p.top_k - 1]]) ++keep;
  }
  const double t = p.temperature, max = l[order[0]] / t;
  std::vector<double> probs(static_cast<size_t>(keep));
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) probs[i] = std::exp(l[order[i]] / t - max);
  if (keep < candidates) {
    for (int32_t i = 0; i < keep; ++i) sum += probs[i];  // best first
  } else {
    for (int32_t i = 0; i < n; ++i)  // id order
      if (MaskAllows(mask, i)) sum += std::exp(l[i] / t - max);
  }
  for (double& q : probs) q /= sum;
  if (p.top_p < 1.0f) {
    double before = 0;
    int32_t k = 0;
    while (k < keep && (k == 0 || before < p.top_p)) before += probs[k++];
    keep = k;
    double s2 = 0;
    for (int32_t i = 0; i < keep; ++i) s2 += probs[i];
    for (int32_t i = 0; i < keep; ++i) probs[i] /= s2;
  }
  double u = SampleUniform(p.seed, draw);
  SampleResult r;
  r.token = order[keep - 1];
  for (int32_t i = 0; i < keep; ++i) {
    if (u < probs[i]) {
      r.token = order[i];
      break;
    }
    u -= probs[i];
  }
  r.logprob = static_cast<float>(l[r.token] - log_z);
  return r;
}

TEST(SamplerTest, SortingOnlyTheReadPrefixChangesNothing) {
  uint64_t state = 12345;
  auto next = [&] {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = (state ^ (state >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  int cases = 0;
  for (int32_t vocab : {1, 2, 7, 64, 300, 3000}) {
    for (int round = 0; round < 12; ++round) {
      // Logits on a coarse grid (many ties), spread wide or narrow.
      const float spread = round % 3 == 0 ? 30.f : (round % 3 == 1 ? 4.f : 0.5f);
      std::vector<float> l(static_cast<size_t>(vocab));
      for (float& x : l) x = std::round((next() % 2001 / 1000.0 - 1.0) * spread * 8) / 8;
      std::vector<uint32_t> mask(MaskWords(vocab), 0);
      for (int32_t i = 0; i < vocab; ++i)
        if (round % 4 != 0 || next() % 3 != 0) mask[i >> 5] |= 1u << (i & 31);
      if (std::none_of(mask.begin(), mask.end(), [](uint32_t w) { return w != 0; })) mask[0] = 1;
      const uint32_t* m = round % 2 ? mask.data() : nullptr;
      for (float temperature : {0.3f, 1.0f, 2.5f}) {
        for (int32_t top_k : {0, 1, 5, 50, vocab}) {
          for (float top_p : {1.0f, 0.9f, 0.4f, 0.01f}) {
            const SamplingParams p{temperature, std::min(top_k, vocab), top_p, next()};
            for (uint64_t draw = 0; draw < 3; ++draw) {
              auto got = SampleRef(l, p, draw, m);
              ASSERT_TRUE(got.ok());
              const SampleResult want = PlainSample(l, p, draw, m);
              ASSERT_EQ(got->token, want.token)
                  << "vocab " << vocab << " round " << round << " t " << temperature << " k "
                  << top_k << " p " << top_p << " draw " << draw;
              ASSERT_EQ(got->logprob, want.logprob);
              ++cases;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 6 * 12 * 3 * 5 * 4 * 3);
}

// The device hands over a row's best C allowed tokens and its sums (RankedPrefix): finishing the
// sample from them gives SampleRef's token and logprob (here the sums are SampleRef's own, so bit
// for bit), or nullopt when the rules read past the prefix — never with the whole row as prefix.
TEST(SamplerTest, APrefixOfTheRankingGivesSampleRefsTokenOrAsksForTheRow) {
  uint64_t state = 777;
  auto next = [&] {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = (state ^ (state >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  int finished = 0, asked = 0;
  for (int32_t vocab : {1, 5, 300, 5000}) {
    for (int round = 0; round < 8; ++round) {
      const float spread = round % 2 ? 12.f : 1.f;  // peaked or flat
      std::vector<float> l(static_cast<size_t>(vocab));
      for (float& x : l) x = std::round((next() % 2001 / 1000.0 - 1.0) * spread * 16) / 16;
      std::vector<uint32_t> mask(MaskWords(vocab), 0);
      for (int32_t i = 0; i < vocab; ++i)
        if (next() % 4 != 0) mask[i >> 5] |= 1u << (i & 31);
      mask[0] |= 1u;
      const uint32_t* m = round % 4 < 2 ? mask.data() : nullptr;
      std::vector<int32_t> order;
      for (int32_t i = 0; i < vocab; ++i)
        if (MaskAllows(m, i)) order.push_back(i);
      std::sort(order.begin(), order.end(),
                [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
      const int32_t candidates = static_cast<int32_t>(order.size());
      const float best = l[order[0]];
      for (float temperature : {0.0f, 0.5f, 1.0f}) {
        double z1 = 0, zt = 0;
        for (int32_t i = 0; i < vocab; ++i) {
          if (!MaskAllows(m, i)) continue;
          z1 += std::exp(static_cast<double>(l[i]) - best);
          if (temperature > 0)
            zt += std::exp(l[i] / double{temperature} - best / double{temperature});
        }
        for (int32_t known : {1, 16, 256, candidates}) {
          known = std::min(known, candidates);
          std::vector<float> top;
          for (int32_t i = 0; i < known; ++i) top.push_back(l[order[i]]);
          RankedPrefix prefix{std::span<const int32_t>(order.data(), static_cast<size_t>(known)),
                              top, candidates, z1, zt};
          for (int32_t top_k : {0, 1, 8, 100}) {
            for (float top_p : {1.0f, 0.9f, 0.3f}) {
              const SamplingParams p{temperature, std::min(top_k, vocab), top_p, next()};
              for (uint64_t draw = 0; draw < 3; ++draw) {
                auto want = SampleRef(l, p, draw, m);
                ASSERT_TRUE(want.ok());
                const std::optional<SampleResult> got = SampleFromPrefix(prefix, p, draw);
                if (known == candidates) {
                  ASSERT_TRUE(got.has_value()) << "the whole row is known";
                }
                if (!got) {
                  ++asked;
                  continue;
                }
                ++finished;
                ASSERT_EQ(got->token, want->token)
                    << "vocab " << vocab << " round " << round << " t " << temperature << " known "
                    << known << " k " << top_k << " p " << top_p;
                ASSERT_EQ(got->logprob, want->logprob);
              }
            }
          }
        }
      }
    }
  }
  // Peaked rows and top-k ≤ the prefix finish on the device's data; flat rows without top-k ask.
  EXPECT_GT(finished, 4 * asked);
  EXPECT_GT(asked, 0);
}

TEST(SamplerTest, ValidationNamesTheParameter) {
  EXPECT_TRUE(ValidateSamplingParams({0.7f, 64, 0.95f, 1}, 262208).ok());
  EXPECT_NE(ValidateSamplingParams({NAN, 0, 1.f, 0}, 10).message().find("temperature"),
            std::string::npos);
  EXPECT_NE(ValidateSamplingParams({-1.f, 0, 1.f, 0}, 10).message().find("temperature"),
            std::string::npos);
  EXPECT_NE(ValidateSamplingParams({INFINITY, 0, 1.f, 0}, 10).message().find("temperature"),
            std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 0, 0.f, 0}, 10).message().find("top_p"),
            std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 0, 1.5f, 0}, 10).message().find("top_p"),
            std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 0, NAN, 0}, 10).message().find("top_p"),
            std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 11, 1.f, 0}, 10).message().find("top_k"),
            std::string::npos);
}

}  // namespace
}  // namespace vlmserve
