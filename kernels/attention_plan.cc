#include "kernels/attention_plan.h"

#include <algorithm>

#include "kernels/kv_layout.h"

namespace vlmserve::attn {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The largest divisor of `group` that is at most kMaxQueryVectors.
int64_t HeadsPerCta(int64_t group) {
  for (int64_t d = std::min<int64_t>(group, kMaxQueryVectors); d > 1; --d) {
    if (group % d == 0) return d;
  }
  return 1;
}

// Keys [begin, end) that queries at tokens [q_begin, q_begin + q_count) of `row` may read.
WorkItem ItemFor(int32_t r, const RowDesc& row, int64_t q_begin, int64_t q_count,
                 const std::vector<int32_t>* token_blocks, const PlanOptions& o) {
  WorkItem w;
  w.row = r;
  w.q_begin = static_cast<int32_t>(q_begin);
  w.q_count = static_cast<int32_t>(q_count);
  const int64_t first_q = row.start + q_begin, last_q = first_q + q_count - 1;
  w.k_begin = static_cast<int32_t>(o.sliding ? kv::FirstSlidingKey(first_q, o.window) : 0);
  bool image = false;
  if (token_blocks != nullptr) {
    for (int64_t j = q_begin; j < q_begin + q_count; ++j) {
      image = image || (*token_blocks)[static_cast<size_t>(row.first_token + j)] >= 0;
    }
  }
  w.k_end = static_cast<int32_t>(image ? row.start + row.tokens : last_q + 1);
  return w;
}

}  // namespace

AttentionPlan PlanPagedAttention(const std::vector<RowDesc>& rows,
                                 const std::vector<int32_t>* token_blocks, const PlanOptions& o) {
  AttentionPlan plan;
  const int64_t group = o.hkv > 0 ? o.hq / o.hkv : 1;
  plan.heads_per_cta = HeadsPerCta(group);
  const int64_t q_per_item = std::max<int64_t>(1, kMaxQueryVectors / plan.heads_per_cta);

  // Rows to the kernels; decode items first without splits.
  std::vector<WorkItem> decode;
  for (size_t r = 0; r < rows.size(); ++r) {
    const RowDesc& row = rows[r];
    const bool prefill = o.tensor_core_prefill && row.tokens > kDecodeMaxTokens;
    const int64_t step = prefill ? kPrefillTileTokens : q_per_item;
    for (int64_t q = 0; q < row.tokens; q += step) {
      const WorkItem w = ItemFor(static_cast<int32_t>(r), row, q, std::min(step, row.tokens - q),
                                 token_blocks, o);
      (prefill ? plan.prefill : decode).push_back(w);
      if (!prefill) {
        plan.query_vectors = std::max(plan.query_vectors, w.q_count * plan.heads_per_cta);
      }
    }
  }
  if (decode.empty()) return plan;

  // Split the decode items' key ranges so the launch has about target_ctas CTAs (never more): every
  // item gets the same number of splits (bounded by its own length), so a batch of long contexts is
  // cut evenly, a lone short one stays whole, and a batch that fills the GPU is not cut at all.
  const int64_t ctas = static_cast<int64_t>(decode.size()) * (o.hq / plan.heads_per_cta);
  const int64_t want = std::clamp<int64_t>(o.target_ctas / std::max<int64_t>(ctas, 1), 1,
                                           std::max<int64_t>(o.max_splits, 1));
  const int64_t min_keys = std::max<int64_t>(kv::kPageTokens, o.min_split_keys);
  for (const WorkItem& w : decode) {
    const int64_t len = w.k_end - w.k_begin;
    const int64_t splits = std::min(want, std::max<int64_t>(1, len / min_keys));
    if (splits <= 1) {
      plan.decode.push_back(w);
      continue;
    }
    // Boundaries on whole pages: base is the page start of k_begin, each split `chunk` keys.
    const int64_t base = w.k_begin - w.k_begin % kv::kPageTokens;
    const int64_t chunk =
        CeilDiv(CeilDiv(w.k_end - base, splits), kv::kPageTokens) * kv::kPageTokens;
    std::vector<WorkItem> parts;
    for (int64_t b = base; b < w.k_end; b += chunk) {
      WorkItem s = w;
      s.k_begin = static_cast<int32_t>(std::max<int64_t>(w.k_begin, b));
      s.k_end = static_cast<int32_t>(std::min<int64_t>(w.k_end, b + chunk));
      parts.push_back(s);
    }
    const int32_t n = static_cast<int32_t>(parts.size());
    const int32_t first = static_cast<int32_t>(plan.parts);
    for (int32_t s = 0; s < n; ++s) {
      parts[static_cast<size_t>(s)].part = first + s;
      parts[static_cast<size_t>(s)].splits = n;
      plan.decode.push_back(parts[static_cast<size_t>(s)]);
    }
    for (int32_t j = 0; j < w.q_count; ++j) {
      MergeItem m;
      m.token = static_cast<int32_t>(rows[static_cast<size_t>(w.row)].first_token + w.q_begin + j);
      m.first_part = first + j * n;
      m.parts = n;
      plan.merges.push_back(m);
    }
    plan.parts += int64_t{w.q_count} * n;
  }
  return plan;
}

int64_t PlanWorkspaceBytes(const AttentionPlan& plan, int64_t hq, int64_t hd) {
  return plan.parts * hq * (hd + 2) * static_cast<int64_t>(sizeof(float));
}

}  // namespace vlmserve::attn
