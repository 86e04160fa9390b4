// The engine's KV manager (block tables, free lists, window releases, counters) and the prefill
// chunking that never splits an image.
#include "engine/kv_manager.h"

#include <gtest/gtest.h>

#include <set>

#include "engine/serve_engine.h"
#include "kernels/kv_layout.h"

namespace vlmserve {
namespace {

TEST(KvManagerTest, GrowReleaseFreeAndCountersBackToZero) {
  KvManager kv({10, 10}, /*window=*/20, true, true);
  ASSERT_TRUE(kv.Grow(1, 33).ok());  // 3 pages each
  EXPECT_EQ(kv.full_table(1), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(kv.sliding_table(1), (std::vector<int32_t>{0, 1, 2}));
  ASSERT_TRUE(kv.Grow(2, 16).ok());
  EXPECT_EQ(kv.full_table(2), (std::vector<int32_t>{3}));
  // The next query of sequence 1 is at 33: it reads keys from 14 on, so page 0 (0..15) stays.
  kv.ReleaseBeforeWindow(1, 33);
  EXPECT_EQ(kv.sliding_table(1)[0], 0);
  // At 37 it reads from 18: page 0 goes, its entry is marked released, and it is reused first.
  ASSERT_TRUE(kv.Grow(1, 37).ok());
  kv.ReleaseBeforeWindow(1, 37);
  EXPECT_EQ(kv.sliding_table(1), (std::vector<int32_t>{kv::kReleasedPage, 1, 2}));
  EXPECT_EQ(kv.full_table(1), (std::vector<int32_t>{0, 1, 2}));  // full layers keep everything
  KvCounters c = kv.counters();
  EXPECT_EQ(c.full_pages_used, 4);
  EXPECT_EQ(c.sliding_pages_used, 3);
  EXPECT_EQ(c.live_sequences, 2u);
  ASSERT_TRUE(kv.Grow(3, 1).ok());
  EXPECT_EQ(kv.sliding_table(3), (std::vector<int32_t>{0}));  // the released page, lowest first
  kv.Free(1);
  kv.Free(2);
  kv.Free(3);
  kv.Free(99);  // unknown: ignored
  c = kv.counters();
  EXPECT_EQ(c.full_pages_used, 0);
  EXPECT_EQ(c.sliding_pages_used, 0);
  EXPECT_EQ(c.full_pages_free, 10);
  EXPECT_EQ(c.sliding_pages_free, 10);
  EXPECT_EQ(c.live_sequences, 0u);
}

TEST(KvManagerTest, ExhaustionAllocatesNothing) {
  KvManager kv({4, 4}, 8, true, true);
  ASSERT_TRUE(kv.Grow(1, 48).ok());  // 3 of 4 pages
  const Status s = kv.Grow(2, 32);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("too few free pages"), std::string::npos);
  EXPECT_EQ(kv.counters().live_sequences, 1u);  // sequence 2 was not created
  EXPECT_EQ(kv.counters().full_pages_used, 3);
  EXPECT_TRUE(kv.Grow(2, 16).ok());
  EXPECT_EQ(kv.max_tokens_per_sequence(), 4 * kv::kPageTokens);
}

// The prefix cache: whole pages of a prompt's leading text are shared (reference-counted), a
// different prefix shares only its common whole pages, and unused entries are evicted when the
// pool runs short.
TEST(KvManagerTest, PrefixCacheSharesWholePagesAndEvictsUnused) {
  KvManager kv({8, 8}, /*window=*/1000, true, true);
  std::vector<int32_t> a(40), b(40);
  for (int i = 0; i < 40; ++i) a[i] = b[i] = 100 + i;
  b[20] = 7;                               // differs in page 1
  EXPECT_EQ(kv.AdoptPrefix(1, a, 36), 0);  // nothing cached yet
  ASSERT_TRUE(kv.Grow(1, 40).ok());
  kv.PublishPrefix(1, a, 36, 40);  // pages 0 and 1 are whole and inside the prefix
  EXPECT_EQ(kv.counters().cached_pages, 2);
  EXPECT_EQ(kv.CachedPrefixPages(a, 36), 2);
  EXPECT_EQ(kv.CachedPrefixPages(b, 36), 1);  // only page 0 matches
  EXPECT_EQ(kv.AdoptPrefix(2, a, 36), 32);
  EXPECT_EQ(kv.full_table(2), (std::vector<int32_t>{0, 1}));  // the very pages of sequence 1
  EXPECT_EQ(kv.AdoptPrefix(3, b, 36), 16);
  EXPECT_EQ(kv.counters().prefix_hits, 3u);
  // Never the prompt's last token: a 32-token prompt can share one page, not two.
  EXPECT_EQ(kv.CachedPrefixPages(std::span<const int32_t>(a).subspan(0, 32), 32), 1);
  kv.Free(1);
  kv.Free(2);
  kv.Free(3);
  EXPECT_EQ(kv.counters().live_sequences, 0u);
  EXPECT_EQ(kv.counters().full_pages_used, 2);  // the cache keeps its two pages
  EXPECT_EQ(kv.available_full_pages(), 8);      // ... which eviction could free
  ASSERT_TRUE(kv.Grow(4, 8 * 16).ok());         // needs the whole pool: evicts
  EXPECT_EQ(kv.counters().cached_pages, 0);
  kv.Free(4);
  EXPECT_EQ(kv.counters().full_pages_used, 0);
  EXPECT_EQ(kv.counters().sliding_pages_used, 0);
}

TEST(KvManagerTest, ModelsWithOneKindOfLayerKeepOneTable) {
  KvManager full_only({4, 0}, 8, true, false);
  ASSERT_TRUE(full_only.Grow(1, 20).ok());
  EXPECT_EQ(full_only.full_table(1).size(), 2u);
  EXPECT_TRUE(full_only.sliding_table(1).empty());
  KvManager sliding_only({0, 3}, 8, false, true);
  // A sliding-only model can run past its pool: pages behind the window come back.
  for (int64_t len = 1; len <= 200; ++len) {
    ASSERT_TRUE(sliding_only.Grow(1, len).ok()) << len;
    sliding_only.ReleaseBeforeWindow(1, len);
  }
  EXPECT_LE(sliding_only.counters().sliding_pages_used, 2);
}

TEST(PrefillChunksTest, NeverSplitsAnImage) {
  // 3 text, 8 image, 5 text, 8 image, 2 text = 26 tokens.
  std::vector<uint8_t> types;
  for (auto [n, t] : {std::pair{3, 0}, {8, 1}, {5, 0}, {8, 1}, {2, 0}})
    types.insert(types.end(), n, t);
  using Chunks = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(PrefillChunks(types, 0), (Chunks{{0, 26}}));
  EXPECT_EQ(PrefillChunks(types, 100), (Chunks{{0, 26}}));
  // 5 would cut the first image: the chunk stops before it; the image (8 > 5) is one chunk.
  EXPECT_EQ(PrefillChunks(types, 5), (Chunks{{0, 3}, {3, 11}, {11, 16}, {16, 24}, {24, 26}}));
  EXPECT_EQ(PrefillChunks(types, 12), (Chunks{{0, 12}, {12, 24}, {24, 26}}));  // cuts in text
  EXPECT_EQ(PrefillChunks(types, 1).size(), 3u + 1 + 5 + 1 + 2);
  // Every split covers the prompt in order, and no chunk ends inside an image.
  for (int64_t max = 1; max < 30; ++max) {
    int64_t at = 0;
    for (auto [b, e] : PrefillChunks(types, max)) {
      EXPECT_EQ(b, at);
      EXPECT_GT(e, b);
      if (e < 26) {
        EXPECT_FALSE(types[e] == 1 && types[e - 1] == 1) << max;
      }
      at = e;
    }
    EXPECT_EQ(at, 26);
  }
}

}  // namespace
}  // namespace vlmserve
