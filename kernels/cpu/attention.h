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

}  // namespace vlmserve
