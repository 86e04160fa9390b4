// The paged KV cache's geometry and Gemma 3's attention mask, as __host__ __device__ helpers: the
// CPU reference, the CUDA kernels and the engine's KV manager all compute addresses, masks and
// window releases here, and the CPU tests check them (tests/kernels/index_math_test.cc).
//
// Layout (per layer): K and V pools of [page][token_in_page][kv_head][head_dim]. A sequence's block
// table (int32) maps its logical page p (positions 16p .. 16p + 15) to a physical page. Gemma 3 has
// two kinds of layers, so a sequence has two tables over two pools:
//   full (global) layers    every position, for the whole sequence
//   sliding (local) layers  only the last `sliding_window` positions are ever read again; pages
//                           wholly before the window are released as the sequence grows and their
//                           table entries set to kReleasedPage. Released entries rather than a
//                           ring: logical page = position / 16 stays one formula for both tables
//                           (no modular indexing in the kernels), freed pages go back to the pool
//                           at once, and the table costs 4 bytes per 16 tokens (32 KiB at 128K).
#pragma once

#include <cstdint>

#include "kernels/index_math.h"  // VLMSERVE_HD

namespace vlmserve::kv {

inline constexpr int32_t kPageTokens = 16;    // tokens per page
inline constexpr int32_t kReleasedPage = -1;  // a sliding table's entry before the window

VLMSERVE_HD int64_t LogicalPage(int64_t position) { return position / kPageTokens; }
VLMSERVE_HD int64_t SlotInPage(int64_t position) { return position % kPageTokens; }
// Pages needed for `tokens` positions.
VLMSERVE_HD int64_t PagesFor(int64_t tokens) { return (tokens + kPageTokens - 1) / kPageTokens; }

// Offset of element (head, d) of the token in `slot` of physical `page`, in a pool laid out
// [page][token_in_page][kv_head][head_dim].
VLMSERVE_HD int64_t PoolOffset(int64_t page, int64_t slot, int64_t head, int64_t d,
                               int64_t kv_heads, int64_t head_dim) {
  return ((page * kPageTokens + slot) * kv_heads + head) * head_dim + d;
}

// Gemma 3's mask, as transformers 5.17 composes it (spec §7.1): a query at position q may read
// the key at position k when k ≤ q (causal) or both are soft tokens of the same image
// (bidirectional within an image; block ids ≥ 0, -1 for text). On sliding layers the window cuts
// both: additionally k > q − window (so an image block is also limited by the window).
VLMSERVE_HD bool AttendAllowed(int64_t q, int64_t k, int32_t q_block, int32_t k_block, bool sliding,
                               int64_t window) {
  const bool full = k <= q || (q_block >= 0 && q_block == k_block);
  return sliding ? full && k > q - window : full;
}

// The first key position a query at `q` can read on a sliding layer.
VLMSERVE_HD int64_t FirstSlidingKey(int64_t q, int64_t window) {
  return q - window + 1 > 0 ? q - window + 1 : 0;
}

// Whether logical page `page` of a sliding table can be released once the next query to run is at
// position `next_q` (every later query reads at least FirstSlidingKey(next_q) onwards).
VLMSERVE_HD bool SlidingPageReleasable(int64_t page, int64_t next_q, int64_t window) {
  return (page + 1) * kPageTokens <= FirstSlidingKey(next_q, window);
}

}  // namespace vlmserve::kv
