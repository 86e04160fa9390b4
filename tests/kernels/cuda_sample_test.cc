// The device's samplers (kernels/cuda/sample) against SampleRef on the same bf16 logits. Greedy:
// the token must be SampleRef's exactly (ties, masks, Gemma 3's 262,208-token vocabulary and an
// odd one for the scalar path), the logprob within float rounding; rows with NaN/inf or an empty
// mask are flagged for the host. Skips without a device, except the argument checks.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
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
  gpu::GreedySampleArgs a{
      d_logits.get(), d_rows.get(), d_mask_of.get(), d_masks.get(), d_out.get(), 4, 2, V};
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

// TopCandidates: per row the first `capacity` tokens of SampleRef's ranking (bit for bit: ids in
// order, values), the counts, and the sums within double rounding; then SampleFromPrefix on them
// draws SampleRef's tokens. Ties (many equal bf16 logits, −0 and +0), masks, capacities 1, 7 and
// 512, rows allowing fewer tokens than the capacity, Gemma's vocabulary and an odd one.
TEST(CudaTopCandidatesTest, PrefixIsSampleRefsRankingAndDrawsItsTokens) {
  SKIP_WITHOUT_GPU();
  Rng rng(23);
  for (const Case c : {Case{262208, 5}, Case{1001, 6}, Case{40, 3}}) {
    const int64_t V = c.vocab, words = static_cast<int64_t>(MaskWords(V));
    std::vector<float> logits(static_cast<size_t>(c.rows * V));
    for (int r = 0; r < c.rows; ++r) {
      for (int64_t i = 0; i < V; ++i) {
        float x = r % 3 == 1 ? static_cast<float>(static_cast<int>(rng.Next() % 9) - 4)  // ties
                             : 6.f * rng.UniformFloat();
        if (r % 3 == 2 && i % 5 == 0) x = (i % 10 == 0) ? 0.f : -0.f;
        logits[static_cast<size_t>(r * V + i)] = __bfloat162float(__float2bfloat16_rn(x));
      }
    }
    std::vector<int32_t> rows, mask_of;
    std::vector<uint32_t> masks;
    std::vector<float> temps;
    for (int r = 0; r < c.rows; ++r) {
      for (int masked = 0; masked < 2; ++masked) {
        rows.push_back(r);
        temps.push_back(r % 2 ? 0.7f : 1.3f);
        if (!masked) {
          mask_of.push_back(-1);
          continue;
        }
        std::vector<uint32_t> m(static_cast<size_t>(words), 0);
        for (int64_t i = 0; i < V; ++i) {
          const bool on = r % 2 ? rng.Next() % 1000 < 1 : rng.Next() % 3 == 0;  // few, or many
          if (on || i == (r * 7919) % V) m[static_cast<size_t>(i >> 5)] |= 1u << (i & 31);
        }
        mask_of.push_back(static_cast<int32_t>(masks.size() / static_cast<size_t>(words)));
        masks.insert(masks.end(), m.begin(), m.end());
      }
    }
    for (int32_t capacity : {1, 7, gpu::kMaxTopCandidates}) {
      const size_t S = rows.size();
      DeviceBuffer<__nv_bfloat16> d_logits(testing::ToBf16(logits));
      DeviceBuffer<int32_t> d_rows(rows), d_mask_of(mask_of), d_ids(S * capacity);
      DeviceBuffer<uint32_t> d_masks(masks);
      DeviceBuffer<float> d_temps(temps), d_values(S * capacity);
      DeviceBuffer<gpu::TopSummary> d_out(S);
      gpu::TopCandidatesArgs a;
      a.logits = d_logits.get();
      a.rows = d_rows.get();
      a.mask_of = d_mask_of.get();
      a.masks = d_masks.get();
      a.temperature = d_temps.get();
      a.ids = d_ids.get();
      a.values = d_values.get();
      a.out = d_out.get();
      a.samples = static_cast<int64_t>(S);
      a.logit_rows = c.rows;
      a.vocab = V;
      a.capacity = capacity;
      ASSERT_TRUE(gpu::TopCandidates(a, nullptr).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto sums = d_out.ToHost();
      const auto ids = d_ids.ToHost();
      const auto values = d_values.ToHost();
      for (size_t s = 0; s < S; ++s) {
        const float* row = logits.data() + rows[s] * V;
        const uint32_t* m = mask_of[s] < 0 ? nullptr : masks.data() + mask_of[s] * words;
        std::vector<int32_t> order;
        for (int32_t i = 0; i < V; ++i)
          if (MaskAllows(m, i)) order.push_back(i);
        std::sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
          return row[x] > row[y] || (row[x] == row[y] && x < y);
        });
        const int32_t K = std::min<int32_t>(capacity, static_cast<int32_t>(order.size()));
        const std::string where = "vocab " + std::to_string(V) + " capacity " +
                                  std::to_string(capacity) + " sample " + std::to_string(s);
        ASSERT_EQ(sums[s].allowed, static_cast<int32_t>(order.size())) << where;
        ASSERT_EQ(sums[s].nonfinite, 0) << where;
        ASSERT_EQ(sums[s].count, K) << where;
        for (int32_t i = 0; i < K; ++i) {
          ASSERT_EQ(ids[s * capacity + i], order[i]) << where << " rank " << i;
          ASSERT_EQ(values[s * capacity + i], row[order[i]]) << where << " rank " << i;
        }
        double z1 = 0, zt = 0;
        const double best = row[order[0]], t = temps[s];
        for (int32_t id : order) {
          z1 += std::exp(row[id] - best);
          zt += std::exp(row[id] / t - best / t);
        }
        EXPECT_NEAR(sums[s].z1, z1, 1e-12 * z1) << where;
        EXPECT_NEAR(sums[s].zt, zt, 1e-12 * zt) << where;
        // The host's draw on the device's prefix: SampleRef's token wherever it finishes.
        const SamplingParams p{temps[s], capacity >= 8 ? 8 : 0, 0.9f, 42};
        RankedPrefix prefix{std::span<const int32_t>(ids.data() + s * capacity, K),
                            std::span<const float>(values.data() + s * capacity, K),
                            sums[s].allowed, sums[s].z1, sums[s].zt};
        const std::span<const float> full(row, static_cast<size_t>(V));
        for (uint64_t draw = 0; draw < 4; ++draw) {
          const std::optional<SampleResult> got = SampleFromPrefix(prefix, p, draw);
          if (!got) continue;
          auto want = SampleRef(full, p, draw, m);
          ASSERT_TRUE(want.ok());
          EXPECT_EQ(got->token, want->token) << where << " draw " << draw;
        }
      }
    }
  }
}

TEST(CudaTopCandidatesTest, RejectsBadArgumentsAndFlagsRowsForTheHost) {
  gpu::TopCandidatesArgs bad;
  bad.samples = 1;
  bad.logit_rows = 1;
  bad.vocab = 16;
  EXPECT_EQ(gpu::TopCandidates(bad, nullptr).code(), StatusCode::kInvalidArgument);  // nulls
  bad.capacity = gpu::kMaxTopCandidates + 1;
  EXPECT_EQ(gpu::TopCandidates(bad, nullptr).code(), StatusCode::kInvalidArgument);
  SKIP_WITHOUT_GPU();
  const int64_t V = 64;
  std::vector<float> logits(static_cast<size_t>(2 * V), 1.f);
  logits[5] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<uint32_t> masks = {0u, 0u};  // allows nothing
  const std::vector<int32_t> rows = {0, 1}, mask_of = {-1, 0};
  const std::vector<float> temps = {1.f, 1.f};
  DeviceBuffer<__nv_bfloat16> d_logits(testing::ToBf16(logits));
  DeviceBuffer<int32_t> d_rows(rows), d_mask_of(mask_of), d_ids(2 * 4);
  DeviceBuffer<uint32_t> d_masks(masks);
  DeviceBuffer<float> d_temps(temps), d_values(2 * 4);
  DeviceBuffer<gpu::TopSummary> d_out(2);
  gpu::TopCandidatesArgs a;
  a.logits = d_logits.get();
  a.rows = d_rows.get();
  a.mask_of = d_mask_of.get();
  a.masks = d_masks.get();
  a.temperature = d_temps.get();
  a.ids = d_ids.get();
  a.values = d_values.get();
  a.out = d_out.get();
  a.samples = 2;
  a.logit_rows = 2;
  a.vocab = V;
  a.capacity = 4;
  ASSERT_TRUE(gpu::TopCandidates(a, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto got = d_out.ToHost();
  EXPECT_EQ(got[0].nonfinite, 1);
  EXPECT_EQ(got[0].count, 0);
  EXPECT_EQ(got[1].allowed, 0);
  EXPECT_EQ(got[1].count, 0);
}

}  // namespace
}  // namespace vlmserve
