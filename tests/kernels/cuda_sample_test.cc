// The device's greedy sampler (kernels/cuda/sample) against SampleRef on the same bf16 logits:
// the token must be SampleRef's exactly (ties, masks, Gemma 3's 262,208-token vocabulary and an
// odd one for the scalar path), the logprob within float rounding; rows with NaN/inf or an empty
// mask are flagged for the host. Skips without a device, except the argument checks.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/sample.h"
#include "kernels/cuda/sample.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

using testing::DeviceBuffer;
using testing::Rng;

TEST(CudaGreedySampleTest, RejectsBadArgumentsBeforeAnyLaunch) {
  gpu::GreedySampleArgs a;
  a.samples = 1;
  a.logit_rows = 1;
  a.vocab = 16;
  EXPECT_EQ(gpu::GreedySample(a, nullptr).code(), StatusCode::kInvalidArgument);  // null pointers
  a.vocab = 0;
  EXPECT_EQ(gpu::GreedySample(a, nullptr).code(), StatusCode::kInvalidArgument);
}

struct Case {
  int64_t vocab;
  int rows;
};

TEST(CudaGreedySampleTest, TokenIsSampleRefsOnEveryRowWithMasksAndTies) {
  SKIP_WITHOUT_GPU();
  Rng rng(11);
  for (const Case c : {Case{262208, 6}, Case{1001, 9}, Case{8, 3}}) {
    const int64_t V = c.vocab, words = static_cast<int64_t>(MaskWords(V));
    // Logits rounded to bf16 (what the LM head writes); a few rows with a narrow range: ties.
    std::vector<float> logits(static_cast<size_t>(c.rows * V));
    for (int r = 0; r < c.rows; ++r) {
      const bool ties = r % 3 == 1;
      for (int64_t i = 0; i < V; ++i) {
        const float x = ties ? static_cast<float>(rng.Next() % 4) : 8.f * rng.UniformFloat();
        logits[static_cast<size_t>(r * V + i)] = __bfloat162float(__float2bfloat16_rn(x));
      }
    }
    // Samples: every row unmasked, then every row under a random mask (every third sample's mask
    // allows only a handful of ids, as a grammar's does), and the last row twice.
    std::vector<int32_t> rows, mask_of;
    std::vector<uint32_t> masks;
    for (int r = 0; r < c.rows; ++r) {
      rows.push_back(r);
      mask_of.push_back(-1);
    }
    for (int r = 0; r < c.rows; ++r) {
      std::vector<uint32_t> m(static_cast<size_t>(words), 0);
      for (int64_t i = 0; i < V; ++i) {
        const bool on = r % 3 == 0 ? rng.Next() % 1000 < 2 : rng.Next() % 2 == 0;
        if (on || i == (r * 7919) % V) m[static_cast<size_t>(i >> 5)] |= 1u << (i & 31);
      }
      rows.push_back(r);
      mask_of.push_back(static_cast<int32_t>(masks.size() / static_cast<size_t>(words)));
      masks.insert(masks.end(), m.begin(), m.end());
    }
    rows.push_back(c.rows - 1);
    mask_of.push_back(-1);

    DeviceBuffer<__nv_bfloat16> d_logits(testing::ToBf16(logits));
    DeviceBuffer<int32_t> d_rows(rows), d_mask_of(mask_of);
    DeviceBuffer<uint32_t> d_masks(masks);
    DeviceBuffer<gpu::GreedyResult> d_out(rows.size());
    gpu::GreedySampleArgs a;
    a.logits = d_logits.get();
    a.rows = d_rows.get();
    a.mask_of = d_mask_of.get();
    a.masks = d_masks.get();
    a.out = d_out.get();
    a.samples = static_cast<int64_t>(rows.size());
    a.logit_rows = c.rows;
    a.vocab = V;
    ASSERT_TRUE(gpu::GreedySample(a, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<gpu::GreedyResult> got = d_out.ToHost();
    for (size_t s = 0; s < rows.size(); ++s) {
      const std::span<const float> row(logits.data() + rows[s] * V, static_cast<size_t>(V));
      const uint32_t* m = mask_of[s] < 0 ? nullptr : masks.data() + mask_of[s] * words;
      auto ref = SampleRef(row, SamplingParams{}, 0, m);
      ASSERT_TRUE(ref.ok());
      int32_t allowed = 0;
      for (int64_t i = 0; i < V; ++i) allowed += MaskAllows(m, i) ? 1 : 0;
      EXPECT_EQ(got[s].token, ref->token) << "vocab " << V << " sample " << s;
      EXPECT_EQ(got[s].allowed, allowed) << "vocab " << V << " sample " << s;
      EXPECT_EQ(got[s].nonfinite, 0);
      EXPECT_NEAR(got[s].logprob, ref->logprob, 1e-5 * (1 + std::fabs(ref->logprob)))
          << "vocab " << V << " sample " << s;
    }
  }
}

TEST(CudaGreedySampleTest, FlagsNonFiniteLogitsAndEmptyMasksForTheHost) {
  SKIP_WITHOUT_GPU();
  const int64_t V = 64;
  std::vector<float> logits(static_cast<size_t>(2 * V), 1.f);
  logits[5] = std::numeric_limits<float>::quiet_NaN();
  logits[static_cast<size_t>(V + 9)] = std::numeric_limits<float>::infinity();
  const std::vector<uint32_t> masks = {0u, 0u, 1u << 9, 0u};  // mask 0: nothing; mask 1: id 9
  const std::vector<int32_t> rows = {0, 1, 1, 0}, mask_of = {-1, -1, 0, 1};
  DeviceBuffer<__nv_bfloat16> d_logits(testing::ToBf16(logits));
  DeviceBuffer<int32_t> d_rows(rows), d_mask_of(mask_of);
  DeviceBuffer<uint32_t> d_masks(masks);
  DeviceBuffer<gpu::GreedyResult> d_out(rows.size());
  gpu::GreedySampleArgs a{d_logits.get(), d_rows.get(), d_mask_of.get(), d_masks.get(),
                          d_out.get(), 4, 2, V};
  ASSERT_TRUE(gpu::GreedySample(a, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<gpu::GreedyResult> got = d_out.ToHost();
  EXPECT_EQ(got[0].nonfinite, 1);  // the NaN at id 5
  EXPECT_EQ(got[1].nonfinite, 1);  // +inf at id 9
  EXPECT_EQ(got[2].allowed, 0);    // empty mask
  EXPECT_EQ(got[3].nonfinite, 0);  // row 0 with only id 9 allowed: the NaN is masked out
  EXPECT_EQ(got[3].token, 9);
  EXPECT_NEAR(got[3].logprob, 0.f, 1e-7);
}

}  // namespace
}  // namespace vlmserve
