// The CPU reference ops used as oracles by the CUDA tests: checked against direct formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/avg_pool.h"
#include "kernels/cpu/axpy.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/patch_embed.h"
#include "kernels/cpu/rms_norm.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16Bits(1.0f), 0x3f80);
  EXPECT_EQ(RoundToBf16(50.596443f), 50.5f);  // spec §6.1: √2560 in bf16
  EXPECT_EQ(RoundToBf16(33.941124f), 34.0f);  // √1152
  EXPECT_EQ(RoundToBf16(73.321213f), 73.5f);  // √5376
  // 1 + 2^-8 is exactly halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
  EXPECT_EQ(RoundToBf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(RoundToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(RoundToBf16(std::nanf(""))));
  EXPECT_EQ(RoundToBf16(INFINITY), INFINITY);
  EXPECT_EQ(RoundToBf16(3.4e38f), INFINITY);  // above bf16's largest finite value
}

TEST(GemmRefTest, MatchesDoublePrecisionDotProducts) {
  const int64_t m = 19, n = 72, k = 99;
  testing::Rng rng(7);
  auto x = rng.Uniform(m * k), w = rng.Uniform(n * k);
  std::vector<float> y(m * n);
  GemmRef({x.data(), w.data(), y.data(), m, n, k});
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0, abs_sum = 0;
      for (int64_t p = 0; p < k; ++p) {
        ref += double(x[i * k + p]) * w[j * k + p];
        abs_sum += std::fabs(double(x[i * k + p]) * w[j * k + p]);
      }
      // fp32 accumulation of k terms: |error| ≤ k · 2^-24 · Σ|terms|.
      EXPECT_NEAR(y[i * n + j], ref, k * std::ldexp(1.0, -24) * abs_sum) << i << "," << j;
    }
  }
}

TEST(GemmRefTest, ThreadedPathEqualsSingleThreaded) {
  // 64·128·1024 = 2^23 MACs takes the threaded path; each output is still summed in k order.
  const int64_t m = 64, n = 128, k = 1024;
  testing::Rng rng(11);
  auto x = rng.Uniform(m * k), w = rng.Uniform(n * k);
  std::vector<float> big(m * n), rows(n);
  GemmRef({x.data(), w.data(), big.data(), m, n, k});
  for (int64_t i = 0; i < m; i += 21) {
    GemmRef({x.data() + i * k, w.data(), rows.data(), 1, n, k});  // 1 row: single-threaded
    for (int64_t j = 0; j < n; ++j) ASSERT_EQ(big[i * n + j], rows[j]) << i << "," << j;
  }
}

// Every path (blocks of 8 and 4 rows, single rows; four output columns at a time, then the rest)
// computes each output as the plain loop below does — one float multiply and one float add per
// k, in k order — so results are bitwise those of that loop, for any row and column count.
TEST(GemmRefTest, EveryBlockingIsBitwiseThePlainLoop) {
  testing::Rng rng(3);
  for (int64_t m : {1, 3, 4, 5, 8, 9, 13, 17}) {
    for (int64_t n : {1, 3, 4, 7, 13}) {
      const int64_t k = 37;
      auto x = rng.Uniform(m * k), w = rng.Uniform(n * k), bias = rng.Uniform(n);
      std::vector<float> y(m * n);
      GemmRef({x.data(), w.data(), y.data(), m, n, k, bias.data()});
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          float acc = 0.f;
          for (int64_t p = 0; p < k; ++p) {
            const float prod = x[i * k + p] * w[j * k + p];
            acc += prod;
          }
          acc += bias[j];
          ASSERT_EQ(y[i * n + j], acc) << m << "x" << n << " at " << i << "," << j;
        }
      }
    }
  }
}

TEST(AxpyRefTest, Formula) {
  std::vector<float> x = {1, 2, -3}, y = {10, 20, 30};
  AxpyRef({0.5f, x.data(), y.data(), 3});
  EXPECT_EQ(y, (std::vector<float>{10.5f, 21.f, 28.5f}));
}

TEST(GemmRefTest, BiasAndInputMajorWeight) {
  const float x[2 * 3] = {1, 2, 3, 4, 5, 6};
  const float w_nk[2 * 3] = {1, 0, -1, 0.5f, 0.5f, 0.5f};  // [n=2, k=3]
  const float w_kn[3 * 2] = {1, 0.5f, 0, 0.5f, -1, 0.5f};  // the same matrix, [k=3, n=2]
  const float bias[2] = {10, 20};
  float y1[4], y2[4];
  GemmRef({x, w_nk, y1, 2, 2, 3, bias, false});
  GemmRef({x, w_kn, y2, 2, 2, 3, bias, true});
  const float want[4] = {1 - 3 + 10, 3 + 20, 4 - 6 + 10, 7.5f + 20};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(y1[i], want[i]) << i;
    EXPECT_EQ(y2[i], want[i]) << i;
  }
}

// eps belongs inside the square root: with a tiny variance the two placements differ by 2×.
TEST(LayerNormRefTest, EpsInsideTheRootWeightAndBias) {
  const float x[2] = {0.f, 1e-3f}, w[2] = {2.f, 3.f}, b[2] = {0.5f, -0.5f};
  float y[2];
  LayerNormRef({x, w, b, y, 1, 2, 1e-6f});
  const double inv = 1.0 / std::sqrt(0.25e-6 + 1e-6);  // var = (5e-4)², eps inside
  EXPECT_NEAR(y[0], -5e-4 * inv * 2 + 0.5, 1e-6);
  EXPECT_NEAR(y[1], 5e-4 * inv * 3 - 0.5, 1e-6);
  EXPECT_NEAR(y[0], -0.8944272 + 0.5, 1e-6);  // -0.4472136 · 2 + 0.5
}

// Gemma's RMSNorm scales by (1 + w): a zero weight is the identity scale.
TEST(RmsNormRefTest, OnePlusWeight) {
  const float x[2] = {3.f, 4.f}, w[2] = {0.f, 0.5f};
  float y[2];
  RmsNormRef({x, w, y, 1, 2, 0.f});
  const double rms = std::sqrt(12.5);
  EXPECT_NEAR(y[0], 3 / rms * 1.0, 1e-6);
  EXPECT_NEAR(y[1], 4 / rms * 1.5, 1e-6);
  float z[2];
  RmsNormRef({x, w, z, 1, 2, 12.5f});  // eps inside the root: rms² + eps = 25
  EXPECT_NEAR(z[0], 3 / 5.0, 1e-6);
}

// The tanh approximation with √(2/π) and 0.044715, not the erf GELU (0.841345 at 1).
TEST(GeluRefTest, TanhApproximation) {
  EXPECT_NEAR(GeluTanh(1.0f), 0.8411919906082768, 1e-7);
  EXPECT_NEAR(GeluTanh(-2.0f), -0.04540230591222494, 1e-7);
  EXPECT_NEAR(GeluTanh(0.5f), 0.34571400982514394, 1e-7);
  EXPECT_NEAR(GeluTanh(3.0f), 2.996362607918227, 1e-6);
  EXPECT_EQ(GeluTanh(0.f), 0.f);
  // Against the same function in long double (64-bit mantissa; written as v·σ(2u), since
  // 1 + tanh(u) cancels in the negative tail even there): the correctly rounded float but for
  // rare near-ties (then 1 ulp apart), over the range activations take; tails exact.
  int64_t off_by_one = 0;
  for (float x = -12.f; x <= 12.f; x += 1.0f / 1024) {
    const long double v = x, k = 0.79788456080286535587989211986876373L;
    const long double want = v / (1.0L + std::exp(-2.0L * k * (v + 0.044715L * v * v * v)));
    const float got = GeluTanh(x), rounded = static_cast<float>(want);
    if (got != rounded) {
      ++off_by_one;
      ASSERT_EQ(std::fabs(std::nextafter(got, rounded) - rounded), 0.f) << x;
    }
  }
  EXPECT_LE(off_by_one, 24) << "of 24577 points";
  EXPECT_EQ(GeluTanh(-20.f), 0.f);
  EXPECT_TRUE(std::signbit(GeluTanh(-200.f)));
  EXPECT_EQ(GeluTanh(20.f), 20.f);
  EXPECT_EQ(GeluTanh(1e30f), 1e30f);
}

TEST(AttentionRefTest, SoftmaxWeightsMaskAndGroupedHeads) {
  // 1 query, 2 keys, 1 head, hd 2: scores (q·k)·scale = [0, ln 3] → weights [1/4, 3/4].
  const float q[2] = {1.f, 0.f}, k[4] = {0.f, 0.f, static_cast<float>(std::log(3.0)), 0.f};
  const float v[4] = {4.f, 8.f, 0.f, 4.f};
  float o[2];
  AttentionRefArgs a;
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = o;
  a.sq = 1;
  a.sk = 2;
  a.hq = 1;
  a.hkv = 1;
  a.hd = 2;
  a.scale = 1.f;
  AttentionRef(a);
  EXPECT_NEAR(o[0], 0.25 * 4 + 0.75 * 0, 1e-6);
  EXPECT_NEAR(o[1], 0.25 * 8 + 0.75 * 4, 1e-6);
  const uint8_t mask[2] = {1, 0};  // only key 0
  a.mask = mask;
  AttentionRef(a);
  EXPECT_NEAR(o[0], 4, 1e-6);
  EXPECT_NEAR(o[1], 8, 1e-6);

  // GQA: 4 query heads on 2 kv heads; heads 2 and 3 read kv head 1, whose single key has v = 7.
  float q4[4] = {1, 1, 1, 1}, k2[2] = {1, 1}, v2[2] = {-1, 7}, o4[4];
  AttentionRefArgs g;
  g.q = q4;
  g.k = k2;
  g.v = v2;
  g.o = o4;
  g.sq = 1;
  g.sk = 1;
  g.hq = 4;
  g.hkv = 2;
  g.hd = 1;
  g.scale = 1.f;
  AttentionRef(g);
  EXPECT_EQ(o4[0], -1);
  EXPECT_EQ(o4[1], -1);
  EXPECT_EQ(o4[2], 7);
  EXPECT_EQ(o4[3], 7);
}

// A 4×4 grid of scalars 0..15 pooled 2×2 (the grid is rebuilt from the flat sequence row-major).
TEST(AvgPoolRefTest, PoolsTheGridNotTheSequence) {
  float x[16], y[4];
  for (int i = 0; i < 16; ++i) x[i] = static_cast<float>(i);
  AvgPoolPatchesRef({x, y, 1, 4, 2, 1});
  EXPECT_EQ(y[0], 2.5f);   // mean(0, 1, 4, 5)
  EXPECT_EQ(y[1], 4.5f);   // mean(2, 3, 6, 7)
  EXPECT_EQ(y[2], 10.5f);  // mean(8, 9, 12, 13)
  EXPECT_EQ(y[3], 12.5f);
}

// Against a direct convolution (kernel p, stride p) in double.
TEST(PatchEmbedRefTest, EqualsDirectConvolution) {
  const int64_t n = 2, c = 3, s = 6, p = 3, d = 4, side = s / p;
  testing::Rng rng(5);
  auto px = rng.Uniform(n * c * s * s), w = rng.Uniform(d * c * p * p), b = rng.Uniform(d);
  std::vector<float> y(n * side * side * d);
  PatchEmbedRef({px.data(), w.data(), b.data(), y.data(), n, c, s, p, d});
  for (int64_t img = 0; img < n; ++img)
    for (int64_t r = 0; r < side; ++r)
      for (int64_t col = 0; col < side; ++col)
        for (int64_t o = 0; o < d; ++o) {
          double acc = b[o];
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t ky = 0; ky < p; ++ky)
              for (int64_t kx = 0; kx < p; ++kx)
                acc += double(px[((img * c + ch) * s + r * p + ky) * s + col * p + kx]) *
                       w[((o * c + ch) * p + ky) * p + kx];
          EXPECT_NEAR(y[((img * side + r) * side + col) * d + o], acc, 1e-5);
        }
}

}  // namespace
}  // namespace vlmserve
