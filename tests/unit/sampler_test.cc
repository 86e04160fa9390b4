// Sampling: greedy, reproducibility, and the empirical distribution against the softmax it should
// follow (chi-square with a fixed seed, so the test is deterministic), with top-k and top-p.
// Plus the single-sequence generation loop's stop and length handling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "engine/generate.h"
#include "engine/sampler.h"
#include "model/cpu_runner.h"
#include "model/model_dir.h"
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
double ChiSquare(const SamplingParams& p, const std::vector<float>& logits, const std::vector<double>& expected, int n) {
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
  EXPECT_LT(ChiSquare({1.0f, 2, 1.0f, 3}, logits, Softmax(logits, 1.0, {false, true, false, false, true}), 100000), 10.8);
  // top-p 0.8 on softmax(logits) = [.086 .234 .052 .012 .636]: keep 4 (.636), then 1 (mass before .636 < .8),
  // then stop (mass before .87 ≥ .8).
  EXPECT_LT(ChiSquare({1.0f, 0, 0.8f, 4}, logits, Softmax(logits, 1.0, {false, true, false, false, true}), 100000), 10.8);
}

TEST(SamplerTest, ValidationNamesTheParameter) {
  EXPECT_TRUE(ValidateSamplingParams({0.7f, 64, 0.95f, 1}, 262208).ok());
  EXPECT_NE(ValidateSamplingParams({NAN, 0, 1.f, 0}, 10).message().find("temperature"), std::string::npos);
  EXPECT_NE(ValidateSamplingParams({-1.f, 0, 1.f, 0}, 10).message().find("temperature"), std::string::npos);
  EXPECT_NE(ValidateSamplingParams({INFINITY, 0, 1.f, 0}, 10).message().find("temperature"), std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 0, 0.f, 0}, 10).message().find("top_p"), std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 0, 1.5f, 0}, 10).message().find("top_p"), std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 0, NAN, 0}, 10).message().find("top_p"), std::string::npos);
  EXPECT_NE(ValidateSamplingParams({1.f, 11, 1.f, 0}, 10).message().find("top_k"), std::string::npos);
}

TEST(GenerateOneTest, StopsAndLengthsAndReleases) {
  auto dir = ModelDir::Load(vlmserve::testing::FixturePath("decoder/pool16_six_layers"));
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  auto runner = CpuModelRunner::Create(*dir->checkpoint, dir->config);
  ASSERT_TRUE(runner.ok());
  auto builder = PromptBuilder::Create(*dir->tokenizer, dir->config.mm_tokens_per_image);
  auto prompt = builder->Build({{Role::kUser, {PromptPart::Text("hello")}}});
  ASSERT_TRUE(prompt.ok());
  GenerateOptions opt;
  opt.max_new_tokens = 3;
  std::vector<int32_t> streamed;
  auto r = GenerateOne(**runner, 1, *prompt, {}, opt, [&](int32_t t) { streamed.push_back(t); });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tokens.size(), 3u);
  EXPECT_EQ(r->finish, FinishReason::kLength);
  EXPECT_EQ(streamed, r->tokens);
  EXPECT_EQ((*runner)->live_sequences(), 0u);

  opt.max_new_tokens = 12;
  auto longer = GenerateOne(**runner, 2, *prompt, {}, opt);
  ASSERT_TRUE(longer.ok());
  EXPECT_EQ(std::vector<int32_t>(longer->tokens.begin(), longer->tokens.begin() + 3), r->tokens);
  // Greedy is deterministic: stopping on the first token that had not appeared before cuts the
  // output right there, without the stop token.
  size_t k = 1;
  while (k < longer->tokens.size() &&
         std::find(longer->tokens.begin(), longer->tokens.begin() + k, longer->tokens[k]) !=
             longer->tokens.begin() + k) {
    ++k;
  }
  ASSERT_LT(k, longer->tokens.size()) << "12 greedy tokens with no new one";
  opt.stop_ids = {longer->tokens[k]};
  auto s = GenerateOne(**runner, 3, *prompt, {}, opt);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->finish, FinishReason::kStop);
  EXPECT_EQ(s->tokens, std::vector<int32_t>(longer->tokens.begin(), longer->tokens.begin() + k));
  EXPECT_EQ((*runner)->live_sequences(), 0u);

  opt.sampling.temperature = -1;
  EXPECT_EQ(GenerateOne(**runner, 4, *prompt, {}, opt).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vlmserve
