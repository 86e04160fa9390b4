// Sampling: greedy, reproducibility, and the empirical distribution against the softmax it should
// follow (chi-square with a fixed seed, so the test is deterministic), with top-k and top-p.
// Plus the single-sequence generation loop's stop and length handling.
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

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
