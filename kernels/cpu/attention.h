// AttentionRef: softmax(q·kᵀ·scale + mask)·v per head, the oracle for every attention kernel.
// SigLIP (spec §4): full bidirectional attention within an image, scale = head_dim^-0.5.
// The decoder (spec §6.4, §7.1) adds grouped-query heads (query head h reads kv head
// h / (hq / hkv)) and a mask (causal, sliding window, per-image bidirectional blocks).
// Dot products, the softmax and the weighted sum are accumulated in double.
#pragma once

#include <cstdint>

namespace vlmserve {

struct AttentionRefArgs {
  const float* q = nullptr;  // [sq, hq, hd]
  const float* k = nullptr;  // [sk, hkv, hd]
  const float* v = nullptr;  // [sk, hkv, hd]
  float* o = nullptr;        // [sq, hq, hd]
  int64_t sq = 0, sk = 0, hq = 0, hkv = 0, hd = 0;
  float scale = 1.0f;
  const uint8_t* mask = nullptr;  // [sq, sk], 1 = query i may attend key j; null = all allowed
};

void AttentionRef(const AttentionRefArgs& args);

// The decoder's attention over the paged KV cache (kernels/kv_layout.h), for one chunk of one
// sequence: queries at positions q_start .. q_start + sq − 1 read keys q_first .. q_start + sq − 1
// (q_first = 0 on full layers, FirstSlidingKey(q_start) on sliding ones) through the block table,
// masked by kv::AttendAllowed. Keys before the chunk are text for the mask (a prefill chunk never
// splits an image, so no earlier key shares a query's image block). Same double accumulation, in
// the same key order, as AttentionRef over the dense cache: results are bitwise equal to it, for
// any split of the sequence into chunks.
struct PagedAttentionRefArgs {
  const float* q = nullptr;              // [sq, hq, hd], RoPE applied
  const float* k_pool = nullptr;         // [pages, kPageTokens, hkv, hd]
  const float* v_pool = nullptr;         // [pages, kPageTokens, hkv, hd]
  const int32_t* block_table = nullptr;  // [PagesFor(q_start + sq)] physical page per logical page
  const int32_t* q_blocks = nullptr;     // [sq] image block per query (-1 = text); null = all text
  float* o = nullptr;                    // [sq, hq, hd]
  int64_t q_start = 0, sq = 0, hq = 0, hkv = 0, hd = 0;
  float scale = 1.0f;
  bool sliding = false;
  int64_t window = 0;  // sliding layers only
};

void PagedAttentionRef(const PagedAttentionRefArgs& args);

}  // namespace vlmserve
