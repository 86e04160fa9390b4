// The first GPU tests (scripts/gpu/check.sh runs them, also under compute-sanitizer): a trivial
// kernel and the cuBLASLt bf16 GEMM, each against its CPU reference. Without a device they skip,
// except DeviceTest, which checks exactly that a missing driver is an error Status, not a crash.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "kernels/cpu/axpy.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/axpy.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

using testing::DeviceBuffer;

TEST(DeviceTest, CountIsAnErrorStatusOrPositive) {
  auto count = CudaDeviceCount();
  if (count.ok()) {
    EXPECT_GT(*count, 0);
    auto desc = DescribeCudaDevices();
    ASSERT_TRUE(desc.ok());
    std::printf("%s", desc->c_str());
  } else {
    EXPECT_EQ(count.status().code(), StatusCode::kUnavailable);
    EXPECT_FALSE(count.status().message().empty());
  }
}

TEST(AxpyTest, MatchesReference) {
  SKIP_WITHOUT_GPU();
  for (int64_t n : {1, 19, 1000, 1 << 20}) {
    testing::Rng rng(n);
    // Halves and small integers: a·x + y is exact in fp32 with or without FMA contraction.
    auto x = rng.SmallInts(n, 100), y = rng.SmallInts(n, 100);
    DeviceBuffer<float> dx(x), dy(y);
    ASSERT_TRUE(Axpy({0.5f, dx.get(), dy.get(), n}, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    AxpyRef({0.5f, x.data(), y.data(), n});
    EXPECT_EQ(dy.ToHost(), y) << "n=" << n;
  }
}

using testing::ToBf16;

struct Shape {
  int64_t m, n, k;
};

// y = x · wᵀ on the GPU vs GemmRef on the same bf16-rounded inputs.
// Fails with the worst element (index, expected, actual) when any exceeds the tolerance.
void CheckGemm(CublasLtGemm& gemm, Shape s, bool integer_inputs) {
  testing::Rng rng(s.m * 1000003 + s.n * 101 + s.k);
  auto x = integer_inputs ? rng.SmallInts(s.m * s.k, 1) : rng.Uniform(s.m * s.k);
  auto w = integer_inputs ? rng.SmallInts(s.n * s.k, 1) : rng.Uniform(s.n * s.k);
  for (float& f : x) f = RoundToBf16(f);
  for (float& f : w) f = RoundToBf16(f);
  std::vector<float> ref(s.m * s.n);
  GemmRef({x.data(), w.data(), ref.data(), s.m, s.n, s.k});

  DeviceBuffer<__nv_bfloat16> dx(ToBf16(x)), dw(ToBf16(w)), dy(s.m * s.n);
  Status st = gemm.Run({dx.get(), dw.get(), dy.get(), s.m, s.n, s.k}, nullptr);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  auto y = dy.ToHost();

  double worst_ratio = 0;
  int64_t worst = -1;
  bool any_nonzero = false;
  bool ref_nonzero = false;  // tiny integer cases (1x1x1) can legitimately be all zero
  for (int64_t i = 0; i < s.m * s.n; ++i) {
    const float got = __bfloat162float(y[i]);
    any_nonzero |= got != 0;
    ref_nonzero |= ref[i] != 0;
    // Integer inputs in [-1, 1] with k ≤ 256: every partial sum is an integer ≤ 256, exact in
    // fp32 and in bf16, so the result must be exact. Random inputs in [-1, 1): the bf16 output
    // rounding (≤ 2^-9 relative; allow 2^-8) plus fp32 accumulation-order differences between
    // cuBLASLt and GemmRef, bounded by 2^-18 · Σ|x_p·w_p| ≤ 2^-18 · k (a few ulps of fp32 per
    // partial sum, for either side, with margin).
    const double tol =
        integer_inputs ? 0.0 : std::ldexp(std::fabs(ref[i]), -8) + std::ldexp(double(s.k), -18);
    const double err = std::fabs(double(got) - ref[i]);
    const double ratio = tol == 0 ? (err == 0 ? 0 : INFINITY) : err / tol;
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  if (ref_nonzero) {
    EXPECT_TRUE(any_nonzero) << "m=" << s.m << " n=" << s.n << " k=" << s.k
                             << ": all-zero output, the GEMM did not run";
  }
  if (worst >= 0) {
    EXPECT_LE(worst_ratio, 1.0) << "m=" << s.m << " n=" << s.n << " k=" << s.k << " worst at ["
                                << worst / s.n << ", " << worst % s.n << "]: expected "
                                << ref[worst] << ", got " << __bfloat162float(y[worst]);
  }
}

TEST(GemmTest, ExactOnIntegerInputs) {
  SKIP_WITHOUT_GPU();
  auto gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
  for (Shape s : {Shape{1, 1, 1}, Shape{19, 72, 64}, Shape{99, 256, 256}, Shape{1, 2560, 256}}) {
    CheckGemm(**gemm, s, /*integer_inputs=*/true);
  }
}

TEST(GemmTest, RandomInputsWithinBf16Tolerance) {
  SKIP_WITHOUT_GPU();
  auto gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
  // Rows 1, 19, 99, 989 × the model's widths (vision 1152/4304, LM 2560/2048/10240).
  for (Shape s : {Shape{1, 2048, 2560}, Shape{19, 1152, 1152}, Shape{99, 4304, 1152},
                  Shape{989, 256, 1152}, Shape{7, 10240, 2560}, Shape{3, 2560, 10240}}) {
    CheckGemm(**gemm, s, /*integer_inputs=*/false);
  }
  EXPECT_EQ((*gemm)->CachedPlans(), 6u);
  CheckGemm(**gemm, Shape{19, 1152, 1152}, false);  // served from the plan cache
  EXPECT_EQ((*gemm)->CachedPlans(), 6u);
}

TEST(GemmTest, RejectsBadArguments) {
  SKIP_WITHOUT_GPU();
  auto gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
  DeviceBuffer<__nv_bfloat16> buf(16);
  Status zero = (*gemm)->Run({buf.get(), buf.get(), buf.get(), 0, 4, 4}, nullptr);
  EXPECT_EQ(zero.code(), StatusCode::kInvalidArgument);
  Status null = (*gemm)->Run({nullptr, buf.get(), buf.get(), 2, 2, 2}, nullptr);
  EXPECT_EQ(null.code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vlmserve
