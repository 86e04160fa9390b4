// The paged KV cache's helpers (kernels/kv_layout.h) and the paged, chunked attention reference:
// the mask helper equals the spec's rule written out; PoolOffset addresses every element once;
// window releases never drop a key a later query reads; and PagedAttentionRef over shuffled pages,
// split into chunks at every point, is bitwise AttentionRef over the dense cache with the dense
// mask — on full and sliding layers, with image blocks, for GQA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/kv_layout.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

TEST(KvLayoutTest, MaskIsTheSpecRule) {
  // Spec §7.1 written out for every (q, k) of a 40-token sequence with two image blocks.
  std::vector<int32_t> block(40, -1);
  for (int i = 5; i < 13; ++i) block[i] = 0;
  for (int i = 20; i < 28; ++i) block[i] = 1;
  for (int64_t window : {4, 7, 100}) {
    for (int q = 0; q < 40; ++q) {
      for (int k = 0; k < 40; ++k) {
        const bool same_image = block[q] >= 0 && block[q] == block[k];
        const bool full = k <= q || same_image;
        EXPECT_EQ(kv::AttendAllowed(q, k, block[q], block[k], false, window), full);
        EXPECT_EQ(kv::AttendAllowed(q, k, block[q], block[k], true, window),
                  full && q - k < window);
      }
    }
  }
}

TEST(KvLayoutTest, PagesSlotsOffsetsAndReleases) {
  EXPECT_EQ(kv::PagesFor(0), 0);
  EXPECT_EQ(kv::PagesFor(1), 1);
  EXPECT_EQ(kv::PagesFor(16), 1);
  EXPECT_EQ(kv::PagesFor(17), 2);
  EXPECT_EQ(kv::LogicalPage(31), 1);
  EXPECT_EQ(kv::SlotInPage(31), 15);
  // Every (page, slot, head, d) of a small pool maps to a distinct offset inside it.
  const int64_t pages = 3, heads = 2, hd = 5;
  std::set<int64_t> seen;
  for (int64_t p = 0; p < pages; ++p)
    for (int64_t s = 0; s < kv::kPageTokens; ++s)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0; d < hd; ++d) seen.insert(kv::PoolOffset(p, s, h, d, heads, hd));
  EXPECT_EQ(static_cast<int64_t>(seen.size()), pages * kv::kPageTokens * heads * hd);
  EXPECT_EQ(*seen.rbegin(), pages * kv::kPageTokens * heads * hd - 1);
  // A released page holds no key that any query at next_q or later may read.
  for (int64_t window : {1, 8, 16, 17, 100}) {
    for (int64_t next_q = 0; next_q < 300; ++next_q) {
      for (int64_t page = 0; page < 20; ++page) {
        if (!kv::SlidingPageReleasable(page, next_q, window)) continue;
        const int64_t last_key = (page + 1) * kv::kPageTokens - 1;
        for (int64_t q = next_q; q < next_q + 50; ++q) {
          EXPECT_FALSE(kv::AttendAllowed(q, last_key, -1, -1, true, window));
        }
      }
      // ... and a page is released as soon as that holds (nothing is kept needlessly).
      const int64_t first = kv::FirstSlidingKey(next_q, window);
      if (first >= kv::kPageTokens) {
        EXPECT_TRUE(kv::SlidingPageReleasable(first / kv::kPageTokens - 1, next_q, window));
      }
      EXPECT_FALSE(kv::SlidingPageReleasable(first / kv::kPageTokens, next_q, window));
    }
  }
}

// Dense reference inputs for one sequence: q for every position, k/v for every position.
struct Dense {
  int64_t n, hq, hkv, hd;
  std::vector<float> q, k, v;
  std::vector<int32_t> block;
};

TEST(PagedAttentionRefTest, ChunkedOverShuffledPagesIsBitwiseDenseAttention) {
  testing::Rng rng(42);
  struct Case {
    int64_t n, hq, hkv, hd, window;
    bool sliding;
  };
  for (Case c : {Case{37, 4, 2, 8, 8, true}, Case{37, 4, 2, 8, 0, false},
                 Case{50, 2, 1, 16, 16, true}, Case{20, 3, 3, 4, 5, true}}) {
    Dense d{c.n,
            c.hq,
            c.hkv,
            c.hd,
            rng.Uniform(c.n * c.hq * c.hd),
            rng.Uniform(c.n * c.hkv * c.hd),
            rng.Uniform(c.n * c.hkv * c.hd),
            std::vector<int32_t>(static_cast<size_t>(c.n), -1)};
    for (int64_t i = 6; i < 14 && i < c.n; ++i) d.block[i] = 0;  // one image block
    // Dense mask and output over the whole sequence.
    std::vector<uint8_t> mask(static_cast<size_t>(c.n * c.n));
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t j = 0; j < c.n; ++j)
        mask[i * c.n + j] = kv::AttendAllowed(i, j, d.block[i], d.block[j], c.sliding, c.window);
    std::vector<float> want(d.q.size());
    AttentionRef({d.q.data(), d.k.data(), d.v.data(), want.data(), c.n, c.n, c.hq, c.hkv, c.hd,
                  0.3f, mask.data()});
    // Pages in a shuffled order; the pool has spare pages full of garbage.
    const int64_t pages = kv::PagesFor(c.n), pool = pages + 3;
    std::vector<int32_t> table(static_cast<size_t>(pages));
    std::iota(table.begin(), table.end(), 3);
    for (size_t i = table.size(); i > 1; --i) std::swap(table[i - 1], table[rng.Next() % i]);
    std::vector<float> kp = rng.Uniform(pool * kv::kPageTokens * c.hkv * c.hd), vp = kp;
    for (int64_t pos = 0; pos < c.n; ++pos) {
      const int64_t at =
          kv::PoolOffset(table[kv::LogicalPage(pos)], kv::SlotInPage(pos), 0, 0, c.hkv, c.hd);
      std::copy_n(d.k.data() + pos * c.hkv * c.hd, c.hkv * c.hd, kp.data() + at);
      std::copy_n(d.v.data() + pos * c.hkv * c.hd, c.hkv * c.hd, vp.data() + at);
    }
    // Any split into two chunks (the image block not split), and single-token decode steps.
    for (int64_t cut = 1; cut < c.n; ++cut) {
      if (cut > 6 && cut < 14) continue;
      std::vector<float> got(d.q.size());
      for (auto [b, e] : {std::pair<int64_t, int64_t>{0, cut}, {cut, c.n}}) {
        PagedAttentionRefArgs a;
        a.q = d.q.data() + b * c.hq * c.hd;
        a.k_pool = kp.data();
        a.v_pool = vp.data();
        a.block_table = table.data();
        a.q_blocks = d.block.data() + b;
        a.o = got.data() + b * c.hq * c.hd;
        a.q_start = b;
        a.sq = e - b;
        a.hq = c.hq;
        a.hkv = c.hkv;
        a.hd = c.hd;
        a.scale = 0.3f;
        a.sliding = c.sliding;
        a.window = c.window;
        PagedAttentionRef(a);
      }
      ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0)
          << "n " << c.n << " sliding " << c.sliding << " cut at " << cut;
    }
  }
}

}  // namespace
}  // namespace vlmserve
