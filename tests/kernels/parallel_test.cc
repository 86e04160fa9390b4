// ParallelFor (kernels/cpu/parallel.h) and the ops that use it: every item runs exactly once,
// nested and concurrent regions complete (inline), errors reach the caller, and the ops' outputs
// are bitwise the same whether a problem is split over threads or not. Also run under TSan
// (scripts/test.sh, stage tsan).
#include "kernels/cpu/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/geglu.h"
#include "kernels/cpu/gelu.h"
#include "kernels/kv_layout.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

constexpr int64_t kBig = kParallelMinWork;  // cost per item that always asks for the pool

TEST(ParallelForTest, EveryItemExactlyOnce) {
  for (int64_t items : {0, 1, 2, 3, 7, 64, 1000}) {
    std::vector<std::atomic<int>> seen(static_cast<size_t>(items));
    ParallelFor(items, kBig, [&](int64_t b, int64_t e) {
      ASSERT_LE(0, b);
      ASSERT_LT(b, e);
      ASSERT_LE(e, items);
      for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)]++;
    });
    for (int64_t i = 0; i < items; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)], 1) << i;
  }
}

TEST(ParallelForTest, SmallWorkStaysOnTheCallingThread) {
  const std::thread::id me = std::this_thread::get_id();
  std::atomic<int> elsewhere{0};
  ParallelFor(16, kParallelMinWork / 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) elsewhere += std::this_thread::get_id() != me;
  });
  EXPECT_EQ(elsewhere, 0);
}

TEST(ParallelForTest, NestedRegionsRunInlineAndFinish) {
  std::atomic<int64_t> sum{0};
  ParallelFor(8, kBig, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      ParallelFor(100, kBig, [&](int64_t b2, int64_t e2) {
        for (int64_t j = b2; j < e2; ++j) sum += j;
      });
    }
  });
  EXPECT_EQ(sum, 8 * 4950);
}

TEST(ParallelForTest, ConcurrentCallersAllFinish) {
  // Two "engines" at once: one gets the pool, the other runs inline; neither waits on the other.
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        ParallelFor(32, kBig, [&](int64_t b, int64_t e) { sum += e - b; });
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(sum, 4 * 50 * 32);
}

TEST(ParallelForTest, AnExceptionReachesTheCallerAfterEveryRangeEnds) {
  std::atomic<int> running{0};
  EXPECT_THROW(ParallelFor(64, kBig,
                           [&](int64_t b, int64_t) {
                             ++running;
                             std::this_thread::sleep_for(std::chrono::microseconds(200));
                             --running;
                             if (b == 0) throw std::runtime_error("range 0 failed");
                           }),
               std::runtime_error);
  EXPECT_EQ(running, 0);  // no range still runs on a stack frame that is gone
  // The pool still works afterwards.
  std::atomic<int64_t> n{0};
  ParallelFor(64, kBig, [&](int64_t b, int64_t e) { n += e - b; });
  EXPECT_EQ(n, 64);
}

// A problem big enough to be split (several heads, ≥ kParallelMinWork) gives the same bits as
// each head computed alone (one item: always inline).
TEST(ParallelForTest, SplitAttentionIsBitwiseEachHeadAlone) {
  const int64_t s = 200, hq = 8, hkv = 4, hd = 40;
  ASSERT_GE(s * s * hd * 3, kParallelMinWork / hq);
  testing::Rng rng(5);
  auto q = rng.Uniform(s * hq * hd), k = rng.Uniform(s * hkv * hd), v = rng.Uniform(s * hkv * hd);
  std::vector<uint8_t> mask(static_cast<size_t>(s * s));
  for (int64_t i = 0; i < s; ++i)
    for (int64_t j = 0; j < s; ++j) mask[i * s + j] = (i * 7 + j * 3) % 5 != 0;
  std::vector<float> all(q.size());
  AttentionRef({q.data(), k.data(), v.data(), all.data(), s, s, hq, hkv, hd, 0.2f, mask.data()});
  for (int64_t h = 0; h < hq; ++h) {
    const int64_t kvh = h / (hq / hkv);
    std::vector<float> qh(s * hd), kh(s * hd), vh(s * hd), oh(s * hd);
    for (int64_t i = 0; i < s; ++i) {
      std::memcpy(&qh[i * hd], &q[(i * hq + h) * hd], hd * 4);
      std::memcpy(&kh[i * hd], &k[(i * hkv + kvh) * hd], hd * 4);
      std::memcpy(&vh[i * hd], &v[(i * hkv + kvh) * hd], hd * 4);
    }
    AttentionRef({qh.data(), kh.data(), vh.data(), oh.data(), s, s, 1, 1, hd, 0.2f, mask.data()});
    for (int64_t i = 0; i < s; ++i)
      ASSERT_EQ(std::memcmp(&oh[i * hd], &all[(i * hq + h) * hd], hd * 4), 0) << h << "," << i;
  }
}

// The paged path at a size that splits over KV heads, with an image block and a chunk boundary:
// bitwise the dense masked attention (the small shapes of paged_attention_test run inline).
TEST(ParallelForTest, SplitPagedAttentionIsBitwiseDense) {
  const int64_t n = 300, hq = 8, hkv = 4, hd = 64;
  testing::Rng rng(9);
  auto q = rng.Uniform(n * hq * hd), k = rng.Uniform(n * hkv * hd), v = rng.Uniform(n * hkv * hd);
  std::vector<int32_t> block(static_cast<size_t>(n), -1);
  for (int64_t i = 100; i < 164; ++i) block[i] = 0;
  for (bool sliding : {false, true}) {
    const int64_t window = sliding ? 96 : 0;
    std::vector<uint8_t> mask(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        mask[i * n + j] = kv::AttendAllowed(i, j, block[i], block[j], sliding, window);
    std::vector<float> want(q.size()), got(q.size());
    AttentionRef({q.data(), k.data(), v.data(), want.data(), n, n, hq, hkv, hd, 0.1f, mask.data()});
    const int64_t pages = kv::PagesFor(n);
    std::vector<int32_t> table(static_cast<size_t>(pages));
    for (int64_t p = 0; p < pages; ++p) table[p] = static_cast<int32_t>(pages - 1 - p);
    std::vector<float> kp(pages * kv::kPageTokens * hkv * hd), vp(kp.size());
    for (int64_t pos = 0; pos < n; ++pos) {
      const int64_t at =
          kv::PoolOffset(table[kv::LogicalPage(pos)], kv::SlotInPage(pos), 0, 0, hkv, hd);
      std::copy_n(k.data() + pos * hkv * hd, hkv * hd, kp.data() + at);
      std::copy_n(v.data() + pos * hkv * hd, hkv * hd, vp.data() + at);
    }
    for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 180}, {180, n}}) {
      PagedAttentionRefArgs a;
      a.q = q.data() + b * hq * hd;
      a.k_pool = kp.data();
      a.v_pool = vp.data();
      a.block_table = table.data();
      a.q_blocks = block.data() + b;
      a.o = got.data() + b * hq * hd;
      a.q_start = b;
      a.sq = e - b;
      a.hq = hq;
      a.hkv = hkv;
      a.hd = hd;
      a.scale = 0.1f;
      a.sliding = sliding;
      a.window = window;
      PagedAttentionRef(a);
    }
    ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0) << "sliding " << sliding;
  }
}

TEST(ParallelForTest, SplitGeluIsElementwise) {
  testing::Rng rng(2);
  const int64_t n = 200000;  // well over the split threshold
  auto x = rng.Uniform(n), up = rng.Uniform(n);
  std::vector<float> y(n), g(n);
  GeluTanhRef(x.data(), y.data(), n);
  GegluRef(x.data(), up.data(), g.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(y[i], GeluTanh(x[i])) << i;
    ASSERT_EQ(g[i], GeluTanh(x[i]) * up[i]) << i;
  }
}

}  // namespace
}  // namespace vlmserve
