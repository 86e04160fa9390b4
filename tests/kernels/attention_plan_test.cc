// The paged-attention plan (kernels/attention_plan.h) and the split merge (kernels/softmax_merge.h)
// on the CPU: every query is covered once, by one item or by disjoint page-aligned splits that a
// merge item joins; each range holds every key the mask allows and never a released page; the
// CTAs' register limits hold; and the plan, run through a CPU emulation of what the CUDA kernels
// compute (fp32, log2-domain online softmax per item, partials merged with softmax_merge.h),
// equals PagedAttentionRef — on full and sliding layers, with image blocks, chunks at offsets,
// forced runs, GQA 1–16, with and without the tensor-core prefill, for split counts from 1 up.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/attention_plan.h"
#include "kernels/cpu/attention.h"
#include "kernels/kv_layout.h"
#include "kernels/softmax_merge.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

using attn::AttentionPlan;
using attn::MergeItem;
using attn::PlanOptions;
using attn::RowDesc;
using attn::WorkItem;

struct TestRow {
  int64_t start, len;
  int64_t image_begin = 0, image_end = 0;  // image positions inside the row, or empty
};

// A step: rows, their tokens' image blocks, block tables (released sliding pages = -1) and pools.
struct Step {
  std::vector<RowDesc> rows;
  std::vector<int32_t> blocks;
  std::vector<int32_t> tables;
  int64_t stride = 0, hq = 0, hkv = 0, hd = 0;
  std::vector<float> q, k_pool, v_pool;
};

Step MakeStep(const std::vector<TestRow>& rows, int64_t hq, int64_t hkv, int64_t hd, bool sliding,
              int64_t window, testing::Rng& rng) {
  Step s;
  s.hq = hq;
  s.hkv = hkv;
  s.hd = hd;
  int64_t pages = 0, tokens = 0;
  for (const TestRow& r : rows) {
    s.stride = std::max(s.stride, kv::PagesFor(r.start + r.len));
    pages += kv::PagesFor(r.start + r.len);
  }
  s.tables.assign(rows.size() * s.stride, kv::kReleasedPage);
  std::vector<int32_t> perm(static_cast<size_t>(pages));
  std::iota(perm.begin(), perm.end(), 0);
  for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.Next() % i]);
  int64_t next = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const TestRow& row = rows[r];
    for (int64_t p = 0; p < kv::PagesFor(row.start + row.len); ++p) {
      const int32_t page = perm[static_cast<size_t>(next++)];
      // The engine releases sliding pages no query of this step (or later) reads.
      const bool released = sliding && kv::SlidingPageReleasable(p, row.start, window);
      s.tables[r * s.stride + p] = released ? kv::kReleasedPage : page;
    }
    s.rows.push_back({tokens, row.len, row.start});
    for (int64_t p = row.start; p < row.start + row.len; ++p) {
      s.blocks.push_back(p >= row.image_begin && p < row.image_end ? 0 : -1);
    }
    tokens += row.len;
  }
  s.q = rng.Uniform(tokens * hq * hd);
  s.k_pool = rng.Uniform(pages * kv::kPageTokens * hkv * hd);
  s.v_pool = rng.Uniform(pages * kv::kPageTokens * hkv * hd);
  return s;
}

int32_t KeyBlock(const Step& s, const RowDesc& row, int64_t k) {
  return k >= row.start ? s.blocks[static_cast<size_t>(row.first_token + k - row.start)] : -1;
}

// What the CUDA kernels compute, in fp32: each item's queries over its key range (masked), online
// softmax in the log2 domain; an unsplit item normalizes into `out`, a split one leaves (m, l, acc)
// in its slot; then each merge item joins its slots.
std::vector<float> Emulate(const Step& s, const AttentionPlan& plan, const PlanOptions& o,
                           float scale) {
  const int64_t hq = s.hq, hd = s.hd, group = hq / s.hkv;
  std::vector<float> out(s.q.size(), 0.f);
  std::vector<float> acc_ws(static_cast<size_t>(plan.parts * hq * hd));
  std::vector<float> m_ws(static_cast<size_t>(plan.parts * hq)), l_ws(m_ws.size());
  const float scale_log2 = scale * 1.4426950408889634f;
  auto run = [&](const WorkItem& w) {
    const RowDesc& row = s.rows[static_cast<size_t>(w.row)];
    for (int32_t j = 0; j < w.q_count; ++j) {
      const int64_t t = row.first_token + w.q_begin + j, qpos = row.start + w.q_begin + j;
      const int32_t qb = s.blocks[static_cast<size_t>(t)];
      for (int64_t h = 0; h < hq; ++h) {
        float m = -INFINITY, l = 0.f;
        std::vector<float> acc(static_cast<size_t>(hd), 0.f);
        for (int64_t k = w.k_begin; k < w.k_end; ++k) {
          if (!kv::AttendAllowed(qpos, k, qb, KeyBlock(s, row, k), o.sliding, o.window)) continue;
          const int32_t page = s.tables[w.row * s.stride + kv::LogicalPage(k)];
          EXPECT_GE(page, 0) << "an allowed key on a released page";
          const int64_t off = kv::PoolOffset(page, kv::SlotInPage(k), h / group, 0, s.hkv, hd);
          float dot = 0.f;
          for (int64_t d = 0; d < hd; ++d) dot += s.q[(t * hq + h) * hd + d] * s.k_pool[off + d];
          const float sc = dot * scale_log2, m_new = std::max(m, sc);
          const float corr = attn::Exp2(m - m_new), p = attn::Exp2(sc - m_new);
          l = l * corr + p;
          for (int64_t d = 0; d < hd; ++d) acc[d] = acc[d] * corr + p * s.v_pool[off + d];
          m = m_new;
        }
        if (w.part < 0) {
          for (int64_t d = 0; d < hd; ++d) out[(t * hq + h) * hd + d] = attn::Normalize(acc[d], l);
        } else {
          const int64_t slot = w.part + int64_t{j} * w.splits;
          m_ws[slot * hq + h] = m;
          l_ws[slot * hq + h] = l;
          std::copy(acc.begin(), acc.end(), acc_ws.begin() + (slot * hq + h) * hd);
        }
      }
    }
  };
  for (const WorkItem& w : plan.decode) run(w);
  for (const WorkItem& w : plan.prefill) run(w);
  for (const MergeItem& mi : plan.merges) {
    for (int64_t h = 0; h < hq; ++h) {
      const auto m_at = [&](int p) { return m_ws[(mi.first_part + p) * hq + h]; };
      const float mx = attn::MergedMax(mi.parts, m_at);
      float l = 0.f;
      for (int p = 0; p < mi.parts; ++p) l += attn::PartWeight(m_at(p), mx) * l_ws[(mi.first_part + p) * hq + h];
      for (int64_t d = 0; d < hd; ++d) {
        float a = 0.f;
        for (int p = 0; p < mi.parts; ++p) {
          a += attn::PartWeight(m_at(p), mx) * acc_ws[((mi.first_part + p) * hq + h) * hd + d];
        }
        out[(mi.token * hq + h) * hd + d] = attn::Normalize(a, l);
      }
    }
  }
  return out;
}

std::vector<float> Reference(const Step& s, const PlanOptions& o, float scale) {
  std::vector<float> ref(s.q.size());
  for (size_t r = 0; r < s.rows.size(); ++r) {
    const RowDesc& row = s.rows[r];
    PagedAttentionRefArgs a;
    a.q = s.q.data() + row.first_token * s.hq * s.hd;
    a.k_pool = s.k_pool.data();
    a.v_pool = s.v_pool.data();
    a.block_table = s.tables.data() + r * s.stride;
    a.q_blocks = s.blocks.data() + row.first_token;
    a.o = ref.data() + row.first_token * s.hq * s.hd;
    a.q_start = row.start;
    a.sq = row.tokens;
    a.hq = s.hq;
    a.hkv = s.hkv;
    a.hd = s.hd;
    a.scale = scale;
    a.sliding = o.sliding;
    a.window = o.window;
    PagedAttentionRef(a);
  }
  return ref;
}

// The structural rules, checked for one plan.
void CheckStructure(const Step& s, const AttentionPlan& plan, const PlanOptions& o,
                    const std::string& what) {
  SCOPED_TRACE(what);
  const int64_t group = o.hq / o.hkv;
  ASSERT_GE(plan.heads_per_cta, 1);
  EXPECT_EQ(group % plan.heads_per_cta, 0);
  EXPECT_LE(plan.heads_per_cta, attn::kMaxQueryVectors);
  // Which items (and splits) cover each token.
  const int64_t tokens = static_cast<int64_t>(s.blocks.size());
  std::vector<int> unsplit(static_cast<size_t>(tokens), 0), merged(static_cast<size_t>(tokens), 0);
  std::vector<std::vector<std::pair<int32_t, int32_t>>> split_ranges(static_cast<size_t>(tokens));
  std::vector<int32_t> slot_owner(static_cast<size_t>(plan.parts), -1);
  auto cover = [&](const WorkItem& w, bool decode) {
    const RowDesc& row = s.rows[static_cast<size_t>(w.row)];
    ASSERT_GE(w.q_count, 1);
    ASSERT_LE(w.q_begin + w.q_count, row.tokens);
    if (decode) {
      EXPECT_LE(w.q_count * plan.heads_per_cta, plan.query_vectors);
      EXPECT_LE(plan.query_vectors, attn::kMaxQueryVectors);
    } else {
      EXPECT_LE(w.q_count, attn::kPrefillTileTokens);
      EXPECT_EQ(w.part, -1);
    }
    EXPECT_GE(w.k_begin, 0);
    EXPECT_LE(w.k_end, row.start + row.tokens);
    EXPECT_LT(w.k_begin, w.k_end);
    // No key in range sits on a released page (the kernels load every key of their range).
    for (int64_t k = w.k_begin; k < w.k_end; ++k) {
      ASSERT_GE(s.tables[w.row * s.stride + kv::LogicalPage(k)], 0) << "key " << k;
    }
    for (int32_t j = 0; j < w.q_count; ++j) {
      const int64_t t = row.first_token + w.q_begin + j;
      if (w.part < 0) {
        ++unsplit[static_cast<size_t>(t)];
        // Every allowed key of this query lies in the range.
        const int64_t qpos = row.start + w.q_begin + j;
        for (int64_t k = 0; k < row.start + row.tokens; ++k) {
          if (kv::AttendAllowed(qpos, k, s.blocks[static_cast<size_t>(t)], KeyBlock(s, row, k),
                                o.sliding, o.window)) {
            EXPECT_TRUE(k >= w.k_begin && k < w.k_end) << "token " << t << " key " << k;
          }
        }
      } else {
        const int64_t slot = w.part + int64_t{j} * w.splits;
        ASSERT_LT(slot, plan.parts);
        EXPECT_EQ(slot_owner[static_cast<size_t>(slot)], -1) << "slot written twice";
        slot_owner[static_cast<size_t>(slot)] = static_cast<int32_t>(t);
        split_ranges[static_cast<size_t>(t)].push_back({w.k_begin, w.k_end});
      }
    }
  };
  for (const WorkItem& w : plan.decode) cover(w, true);
  for (const WorkItem& w : plan.prefill) cover(w, false);
  for (const MergeItem& m : plan.merges) {
    ASSERT_GE(m.token, 0);
    ASSERT_LT(m.token, tokens);
    ++merged[static_cast<size_t>(m.token)];
    EXPECT_GE(m.parts, 2);
    for (int32_t p = 0; p < m.parts; ++p) {
      EXPECT_EQ(slot_owner[static_cast<size_t>(m.first_part + p)], m.token);
    }
  }
  for (int64_t t = 0; t < tokens; ++t) {
    auto& ranges = split_ranges[static_cast<size_t>(t)];
    // Exactly one way: one unsplit item, or splits joined by exactly one merge.
    EXPECT_EQ(unsplit[static_cast<size_t>(t)] + merged[static_cast<size_t>(t)], 1) << t;
    if (ranges.empty()) continue;
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) {
      EXPECT_EQ(ranges[i].first, ranges[i - 1].second) << "splits must tile the range";
      EXPECT_EQ(ranges[i].first % kv::kPageTokens, 0) << "split boundaries on whole pages";
    }
  }
}

struct Case {
  std::vector<TestRow> rows;
  int64_t hq, hkv;
  bool sliding;
  int64_t window;
};

std::vector<Case> Cases() {
  // Decode rows at long and short contexts, a forced run, a prefill chunk holding an image, a
  // chunk at an offset, a one-token sequence.
  const std::vector<TestRow> mixed = {{900, 1}, {40, 5}, {0, 100, 20, 84}, {200, 40}, {0, 1},
                                      {2047, 1}, {63, 1}};
  const std::vector<TestRow> decode = {{1500, 1}, {700, 1}, {16, 1}, {300, 3}};
  std::vector<Case> cases;
  for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{8, 4}, {4, 4}, {8, 1}, {16, 1}, {6, 2}}) {
    cases.push_back({mixed, hq, hkv, false, 0});
    cases.push_back({mixed, hq, hkv, true, 64});
    cases.push_back({decode, hq, hkv, true, 300});
    cases.push_back({decode, hq, hkv, false, 0});
  }
  return cases;
}

TEST(AttentionPlanTest, CoversEveryQueryOnceWithinItsRangesAndLimits) {
  testing::Rng rng(5);
  for (const Case& c : Cases()) {
    const Step s = MakeStep(c.rows, c.hq, c.hkv, 4, c.sliding, c.window, rng);
    for (bool tc : {false, true}) {
      for (int64_t target : {1, 64, 264, 5000}) {
        PlanOptions o{c.hq, c.hkv, c.sliding, c.window, tc, target, 256, 32};
        const AttentionPlan plan = attn::PlanPagedAttention(s.rows, &s.blocks, o);
        CheckStructure(s, plan, o,
                       "hq " + std::to_string(c.hq) + " hkv " + std::to_string(c.hkv) +
                           (c.sliding ? " sliding" : " full") + " tc " + std::to_string(tc) +
                           " target " + std::to_string(target));
      }
    }
  }
}

TEST(AttentionPlanTest, EmulatedPlanEqualsPagedAttentionRef) {
  testing::Rng rng(11);
  for (const Case& c : Cases()) {
    const Step s = MakeStep(c.rows, c.hq, c.hkv, 8, c.sliding, c.window, rng);
    for (bool tc : {false, true}) {
      for (int64_t target : {1, 264, 5000}) {
        PlanOptions o{c.hq, c.hkv, c.sliding, c.window, tc, target, 64, 32};
        const AttentionPlan plan = attn::PlanPagedAttention(s.rows, &s.blocks, o);
        const std::vector<float> got = Emulate(s, plan, o, 0.35f), want = Reference(s, o, 0.35f);
        double worst = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          worst = std::max(worst, std::abs(double{got[i]} - want[i]));
        }
        // fp32 sums in another order than the double reference: |v| ≤ 1, so 1e-5 is ~100 ulps.
        EXPECT_LT(worst, 1e-5) << "hq " << c.hq << " hkv " << c.hkv
                               << (c.sliding ? " sliding" : " full") << " tc " << tc
                               << " target " << target << " merges " << plan.merges.size();
      }
    }
  }
}

TEST(AttentionPlanTest, SplitsFillTheGpuOnlyWhenItIsIdle) {
  PlanOptions o{8, 4, false, 0, true, 264, 256, 32};
  // One decode row at 8192 keys: 4 kv groups → 4 CTAs without splits, so it is cut into 32
  // splits (the cap) of 256 keys.
  AttentionPlan one = attn::PlanPagedAttention({{0, 1, 8191}}, nullptr, o);
  EXPECT_EQ(one.heads_per_cta, 2);
  EXPECT_EQ(one.query_vectors, 2);
  EXPECT_EQ(one.decode.size(), 32u);
  EXPECT_EQ(one.merges.size(), 1u);
  EXPECT_EQ(one.parts, 32);
  EXPECT_EQ(attn::PlanWorkspaceBytes(one, 8, 256), 32 * 8 * 258 * 4);
  // A short context is never cut below min_split_keys.
  AttentionPlan short_one = attn::PlanPagedAttention({{0, 1, 300}}, nullptr, o);
  EXPECT_EQ(short_one.decode.size(), 1u);
  EXPECT_TRUE(short_one.merges.empty());
  // 64 decode rows already give 256 CTAs: no splits at all.
  std::vector<RowDesc> batch;
  for (int i = 0; i < 64; ++i) batch.push_back({i, 1, 2047});
  AttentionPlan full = attn::PlanPagedAttention(batch, nullptr, o);
  EXPECT_EQ(full.decode.size(), 64u);
  EXPECT_EQ(full.parts, 0);
  // A long prefill row goes to the tensor-core kernel in 64-token tiles, or without it to the
  // decode kernel in chunks of 8 / heads_per_cta tokens.
  AttentionPlan pre = attn::PlanPagedAttention({{0, 130, 0}}, nullptr, o);
  EXPECT_EQ(pre.prefill.size(), 3u);
  EXPECT_TRUE(pre.decode.empty());
  o.tensor_core_prefill = false;
  AttentionPlan no_tc = attn::PlanPagedAttention({{0, 130, 0}}, nullptr, o);
  EXPECT_TRUE(no_tc.prefill.empty());
  EXPECT_EQ(no_tc.decode.size(), 33u);  // 130 tokens, 4 per CTA
}

}  // namespace
}  // namespace vlmserve
