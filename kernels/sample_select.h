// The greedy choice as a reduction, shared by the CUDA sampler (kernels/cuda/sample) and its CPU
// test: SampleRef (kernels/cpu/sample) walks the vocabulary in id order and keeps the first
// allowed token whose logit is strictly higher than the best so far — the highest logit, the lowest
// id among equals. The device splits the vocabulary over threads and combines partial results in
// whatever tree its warps and blocks form, so the combine must give SampleRef's answer for every
// split and every order: it is a total order on (logit, id), hence associative and commutative,
// for finite and infinite logits. NaN breaks any such order (SampleRef's answer then depends on
// where the NaN sits), so the device counts non-finite allowed logits and the runner hands those
// rows to SampleRef itself. Plain C++ when not compiled by nvcc.
#pragma once

#include <cstdint>

#include "kernels/index_math.h"  // VLMSERVE_HD

namespace vlmserve::sel {

struct Best {
  float value = 0.f;
  int32_t id = -1;  // -1: nothing allowed seen yet (the identity of Combine)
};

// The better of two partial results: higher value, then lower id; an empty side loses.
VLMSERVE_HD Best Combine(Best a, Best b) {
  if (a.id < 0) return b;
  if (b.id < 0) return a;
  if (a.value > b.value) return a;
  if (b.value > a.value) return b;
  return a.id < b.id ? a : b;
}

// Extends a partial result by one allowed token (the same rule as Combine with a one-token side).
VLMSERVE_HD Best Consider(Best a, float value, int32_t id) { return Combine(a, Best{value, id}); }

}  // namespace vlmserve::sel
