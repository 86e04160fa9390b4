// KV cache sizing (model/kv_sizing.h): which setting decides, the fraction's arithmetic on a
// device's memory, and the two errors (too small to serve one image request; larger than the free
// memory) with messages that name the flags to change.
#include "model/kv_sizing.h"

#include <gtest/gtest.h>

#include "kernels/kv_layout.h"

namespace vlmserve {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST(KvSizingTest, PageBytesCountEveryLayersKAndV) {
  Gemma3TextConfig t;
  t.num_hidden_layers = 34;  // the 4B: 34 layers, 4 KV heads of 256
  t.num_key_value_heads = 4;
  t.head_dim = 256;
  EXPECT_EQ(KvPageBytes(t, 2), uint64_t{34} * 2 * 16 * 4 * 256 * 2);  // 2.125 MiB per page
  EXPECT_EQ(KvPageBytes(t, 4), 2 * KvPageBytes(t, 2));
}

TEST(KvSizingTest, TokensThenBytesThenFractionThenTheDefault) {
  const uint64_t page = 1000;
  const KvDeviceMemory dev{100 * kGiB, 90 * kGiB, kGiB};
  KvSizing s;
  s.tokens = 100;  // → 7 pages (16 tokens each, rounded up), whatever else is set
  s.bytes = 5000000;
  s.memory_fraction = 0.5;
  auto p = PlanKvCache(s, page, 32, 16384, 4096, &dev);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->pages, 7);
  EXPECT_EQ(p->bytes, 7000u);
  EXPECT_NE(p->how.find("--kv-cache-tokens 100"), std::string::npos);

  s.tokens = 0;  // bytes: whole pages that fit
  p = PlanKvCache(s, page, 32, 16384, 4096, &dev);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->pages, 5000);
  EXPECT_NE(p->how.find("--kv-cache-bytes"), std::string::npos);

  s.bytes = 0;  // fraction: 0.5 × 100 GiB − 10 GiB in use − 1 GiB reserve = 39 GiB
  const uint64_t big_page = 2 * 1024 * 1024;
  p = PlanKvCache(s, big_page, 32, 16384, 131072, &dev);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->pages, static_cast<int64_t>(39 * kGiB / big_page));
  EXPECT_NE(p->how.find("--gpu-memory-fraction 0.50 of 100.00 GiB"), std::string::npos) << p->how;

  p = PlanKvCache(s, page, 32, 16384, 4096, nullptr);  // no device: the fraction means nothing
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->pages, kv::PagesFor(16384));
  EXPECT_NE(p->how.find("default"), std::string::npos);
}

TEST(KvSizingTest, AFractionIsCappedAt256FullContexts) {
  const KvDeviceMemory dev{100 * kGiB, 99 * kGiB, kGiB};
  KvSizing s;
  s.memory_fraction = 0.9;
  auto p = PlanKvCache(s, 1024, 96, 16384, 1024, &dev);  // a tiny model: ~89 M pages would fit
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->pages, kv::PagesFor(1024) * 256);
  EXPECT_NE(p->how.find("capped"), std::string::npos);
}

TEST(KvSizingTest, TooSmallForOneImageRequestIsAClearError) {
  // The weights already hold 85 of 100 GiB: 0.9 leaves 90 − 85 − 1 = 4 GiB, one 3 GiB page.
  const KvDeviceMemory dev{100 * kGiB, 15 * kGiB, kGiB};
  KvSizing s;
  s.memory_fraction = 0.9;
  auto p = PlanKvCache(s, 3 * kGiB, 320, 16384, 131072, &dev);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(p.status().message().find("raise --gpu-memory-fraction"), std::string::npos)
      << p.status().message();
  EXPECT_NE(p.status().message().find("320"), std::string::npos);

  s.memory_fraction = 0.5;  // less than what is already in use: no budget at all
  p = PlanKvCache(s, 1024, 320, 16384, 131072, &dev);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);

  KvSizing t;
  t.tokens = 16;  // one page: below 320 tokens
  EXPECT_EQ(PlanKvCache(t, 1024, 320, 16384, 4096, nullptr).status().code(),
            StatusCode::kResourceExhausted);
}

TEST(KvSizingTest, MoreThanTheFreeMemoryIsAClearError) {
  const KvDeviceMemory dev{100 * kGiB, 10 * kGiB, kGiB};
  KvSizing s;
  s.bytes = static_cast<int64_t>(20 * kGiB);
  auto p = PlanKvCache(s, 1024 * 1024, 32, 16384, 4096, &dev);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(p.status().message().find("only 10.00 GiB"), std::string::npos)
      << p.status().message();
}

TEST(KvSizingTest, BadSettingsAreInvalidArguments) {
  KvSizing s;
  s.memory_fraction = 1.5;
  EXPECT_EQ(PlanKvCache(s, 1024, 32, 16384, 4096, nullptr).status().code(),
            StatusCode::kInvalidArgument);
  s.memory_fraction = 0;
  s.bytes = -1;
  EXPECT_EQ(PlanKvCache(s, 1024, 32, 16384, 4096, nullptr).status().code(),
            StatusCode::kInvalidArgument);
  s.bytes = 0;
  s.tokens = int64_t{1} << 40;  // 2^36 pages
  EXPECT_EQ(PlanKvCache(s, 1024, 32, 16384, 4096, nullptr).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(3 * kGiB / 2), "1.50 GiB");
}

}  // namespace
}  // namespace vlmserve
