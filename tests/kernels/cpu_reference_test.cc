// The CPU reference ops used as oracles by the CUDA tests: checked against direct formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/axpy.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm.h"
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

TEST(AxpyRefTest, Formula) {
  std::vector<float> x = {1, 2, -3}, y = {10, 20, 30};
  AxpyRef({0.5f, x.data(), y.data(), 3});
  EXPECT_EQ(y, (std::vector<float>{10.5f, 21.f, 28.5f}));
}

}  // namespace
}  // namespace vlmserve
