// Exact merge of partial softmax-attention results (flash-decoding's second pass), as
// __host__ __device__ helpers: the CUDA merge kernel and the CPU emulation in
// tests/kernels/attention_plan_test.cc use the same code.
//
// A part covers a subset of one query's keys and holds, in the log2 domain the kernels use
// (scores pre-multiplied by scale · log2 e):
//   m  the largest score of its allowed keys (−inf when it had none),
//   l  Σ 2^(s_j − m) over them,
//   acc[d] = Σ 2^(s_j − m) · v_j[d]   (not divided by l).
// The whole query's output is Σ_parts 2^(m_p − M) acc_p / Σ_parts 2^(m_p − M) l_p with M the
// largest m_p: the same value as one pass over all keys (up to fp32 rounding of the reordered
// sums). Parts without keys weigh 0; a query with no allowed key at all gets zeros (as the CPU
// reference).
#pragma once

#include <cmath>

#include "kernels/index_math.h"  // VLMSERVE_HD

namespace vlmserve::attn {

#if defined(__CUDA_ARCH__)
VLMSERVE_HD float Exp2(float x) { return exp2f(x); }
#else
VLMSERVE_HD float Exp2(float x) { return std::exp2(x); }
#endif

// The largest m over `parts` parts, read through m_at(p).
template <typename MAt>
VLMSERVE_HD float MergedMax(int parts, MAt m_at) {
  float mx = -INFINITY;
  for (int p = 0; p < parts; ++p) mx = fmaxf(mx, m_at(p));
  return mx;
}

// Weight of a part with maximum m in the merged sum whose maximum is mx (0 for an empty part).
VLMSERVE_HD float PartWeight(float m, float mx) {
  return m == -INFINITY ? 0.f : Exp2(m - mx);
}

// The final value from a merged accumulator and merged sum (0 when no key was allowed).
VLMSERVE_HD float Normalize(float acc, float l) { return l > 0.f ? acc / l : 0.f; }

}  // namespace vlmserve::attn
