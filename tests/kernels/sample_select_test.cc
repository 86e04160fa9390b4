// The device sampler's reduction rule (kernels/sample_select.h) against SampleRef's greedy choice:
// the vocabulary is split over "threads" as the CUDA kernel splits it (strided chunks of 8 ids),
// each thread scans its ids in order, and the partial results are combined in random trees — the
// answer must be SampleRef's token for every split and order, with heavy ties (few distinct
// values, as bf16 logits have), masks, and ±inf. A rule that kept the first-combined or the
// higher id among equals fails here.
#include "kernels/sample_select.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/sample.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

using testing::Rng;

// The kernel's first pass for one row, with `threads` threads and chunks of `v` ids, then a
// random combine tree over the partial results.
int32_t ReduceLikeTheKernel(const std::vector<float>& logits, const uint32_t* mask, int threads,
                            int v, Rng& rng) {
  const int64_t n = static_cast<int64_t>(logits.size());
  std::vector<sel::Best> part(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    for (int64_t c = int64_t{t} * v; c < n; c += int64_t{threads} * v) {
      for (int64_t id = c; id < std::min(n, c + v); ++id) {
        if (MaskAllows(mask, id)) {
          part[static_cast<size_t>(t)] = sel::Consider(part[static_cast<size_t>(t)],
                                                       logits[static_cast<size_t>(id)],
                                                       static_cast<int32_t>(id));
        }
      }
    }
  }
  while (part.size() > 1) {  // combine two random partials, in a random argument order
    const size_t i = rng.Next() % part.size();
    sel::Best a = part[i];
    part.erase(part.begin() + static_cast<std::ptrdiff_t>(i));
    const size_t j = rng.Next() % part.size();
    part[j] = rng.Next() % 2 ? sel::Combine(a, part[j]) : sel::Combine(part[j], a);
  }
  return part[0].id;
}

TEST(SampleSelectTest, AnySplitAndCombineOrderGivesSampleRefsGreedyToken) {
  Rng rng(7);
  const float inf = std::numeric_limits<float>::infinity();
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t vocab = 1 + static_cast<int64_t>(rng.Next() % 700);
    const int distinct = 1 + static_cast<int>(rng.Next() % 6);  // few values: many ties
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (float& l : logits) {
      const uint64_t r = rng.Next() % 100;
      l = r < 3 ? -inf : r < 4 && trial % 3 == 0 ? inf : static_cast<float>(rng.Next() % distinct);
    }
    std::vector<uint32_t> mask(MaskWords(vocab), 0);
    const bool masked = trial % 2 == 1;
    for (int64_t id = 0; id < vocab; ++id) {
      if (rng.Next() % 3 != 0) mask[static_cast<size_t>(id >> 5)] |= 1u << (id & 31);
    }
    const uint32_t* m = masked ? mask.data() : nullptr;
    auto ref = SampleRef(logits, SamplingParams{}, 0, m);
    const int threads = 1 + static_cast<int>(rng.Next() % 64);
    const int v = trial % 4 == 0 ? 1 : 8;
    const int32_t got = ReduceLikeTheKernel(logits, m, threads, v, rng);
    if (!ref.ok()) {  // nothing allowed
      EXPECT_EQ(got, -1) << "trial " << trial;
      continue;
    }
    EXPECT_EQ(got, ref->token) << "trial " << trial << " vocab " << vocab << " threads "
                               << threads;
  }
}

TEST(SampleSelectTest, CombineIsATotalOrderWithTheEmptyResultAsIdentity) {
  const sel::Best empty;
  const sel::Best a{1.f, 5}, b{1.f, 3}, c{2.f, 9}, d{-std::numeric_limits<float>::infinity(), 0};
  for (const sel::Best& x : {a, b, c, d}) {
    EXPECT_EQ(sel::Combine(empty, x).id, x.id);
    EXPECT_EQ(sel::Combine(x, empty).id, x.id);
    for (const sel::Best& y : {a, b, c, d}) {
      EXPECT_EQ(sel::Combine(x, y).id, sel::Combine(y, x).id);
      for (const sel::Best& z : {a, b, c, d}) {
        EXPECT_EQ(sel::Combine(sel::Combine(x, y), z).id, sel::Combine(x, sel::Combine(y, z)).id);
      }
    }
  }
  EXPECT_EQ(sel::Combine(a, b).id, 3);  // equal logits: the lower id
  EXPECT_EQ(sel::Combine(a, c).id, 9);  // higher logit wins over a lower id
}

}  // namespace
}  // namespace vlmserve
