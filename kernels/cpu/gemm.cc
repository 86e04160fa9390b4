// fp32 reference GEMM (see gemm.h). Accumulates each output in fp32 in k order.
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace vlmserve {
namespace {

// Rows processed together: each output of each row is still accumulated in fp32 in k order, one
// multiply and one add per step exactly as in the one-row loop below (so the result is bitwise
// the same whatever the batch), but the arithmetic runs across the block's rows — one vector of
// kRows lanes, over a transposed copy of their inputs — so weights are read once per block
// instead of once per row. This is what makes a step of many rows cheaper than many steps.
// The lanes are written as GCC/Clang vector types: left to itself the auto-vectoriser chose the
// k loop instead and spent its time shuffling (measured: 58 % of a demo-model request).
// (Spelled out per width: GCC ignores vector_size on a dependent alias template.)
typedef float RowVec8 __attribute__((vector_size(8 * sizeof(float))));
typedef float RowVec4 __attribute__((vector_size(4 * sizeof(float))));
template <int64_t kRows>
using RowVec = std::conditional_t<kRows == 8, RowVec8, RowVec4>;

// Always inlined into its callers: a target_clones caller (below) only gets AVX2 code for what is
// compiled inside it, and a separate out-of-line copy would be the x86-64 baseline's.
template <int64_t kRows>
[[gnu::always_inline]] inline void GemmRowBlock(const GemmRefArgs& a, int64_t i0,
                                                std::vector<float>& xs) {
  using V = RowVec<kRows>;
  static_assert(sizeof(V) == kRows * sizeof(float), "one lane per row");
  xs.resize(static_cast<size_t>(a.k * kRows));  // [k][kRows]: the block's inputs, transposed
  for (int64_t r = 0; r < kRows; ++r) {
    const float* xi = a.x + (i0 + r) * a.k;
    for (int64_t p = 0; p < a.k; ++p) xs[static_cast<size_t>(p * kRows + r)] = xi[p];
  }
  auto store = [&a, i0](const V& acc, int64_t j) {
    for (int64_t r = 0; r < kRows; ++r) a.y[(i0 + r) * a.n + j] = acc[r];
  };
  // Four output columns at a time: four independent accumulator vectors keep the adder busy
  // (one vector's chain of dependent adds would wait on each add's latency). Each output is still
  // one multiply and one add per p, in p order: the same roundings as the one-row loop (ISO C++
  // mode: no contraction into fused multiply-adds).
  int64_t j = 0;
  for (; j + 4 <= a.n; j += 4) {
    const float* w0 = a.w + j * a.k;
    const float* w1 = w0 + a.k;
    const float* w2 = w1 + a.k;
    const float* w3 = w2 + a.k;
    V acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
    for (int64_t p = 0; p < a.k; ++p) {
      V xp;
      std::memcpy(&xp, xs.data() + p * kRows, sizeof(V));
      acc0 += xp * w0[p];
      acc1 += xp * w1[p];
      acc2 += xp * w2[p];
      acc3 += xp * w3[p];
    }
    store(acc0, j);
    store(acc1, j + 1);
    store(acc2, j + 2);
    store(acc3, j + 3);
  }
  for (; j < a.n; ++j) {
    const float* wj = a.w + j * a.k;
    V acc = {};
    for (int64_t p = 0; p < a.k; ++p) {
      V xp;
      std::memcpy(&xp, xs.data() + p * kRows, sizeof(V));
      acc += xp * wj[p];
    }
    store(acc, j);
  }
  if (a.bias) {
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t c = 0; c < a.n; ++c) a.y[(i0 + r) * a.n + c] += a.bias[c];
    }
  }
}

// Compiled twice, for AVX2 and for the x86-64 baseline, the better chosen when the program starts
// (AVX2 holds 8 floats: the whole block in one vector). Without fast-math and with contraction
// off (ISO C++), both compute the same roundings: bitwise the same results.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VLMSERVE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VLMSERVE_CLONES
#endif
VLMSERVE_CLONES void GemmRowBlock8(const GemmRefArgs& a, int64_t i0, std::vector<float>& xs) {
  GemmRowBlock<8>(a, i0, xs);
}
VLMSERVE_CLONES void GemmRowBlock4(const GemmRefArgs& a, int64_t i0, std::vector<float>& xs) {
  GemmRowBlock<4>(a, i0, xs);
}

void GemmRows(const GemmRefArgs& a, int64_t row_begin, int64_t row_end) {
  if (!a.w_input_major) {  // blocks of 8 rows, then of 4, then single rows
    std::vector<float> xs;
    for (; row_end - row_begin >= 8; row_begin += 8) GemmRowBlock8(a, row_begin, xs);
    for (; row_end - row_begin >= 4; row_begin += 4) GemmRowBlock4(a, row_begin, xs);
  }
  for (int64_t i = row_begin; i < row_end; ++i) {
    const float* xi = a.x + i * a.k;
    float* yi = a.y + i * a.n;
    if (a.w_input_major) {
      // y[i, :] = Σ_p x[i, p] · w[p, :], still summed in p order for every output.
      for (int64_t j = 0; j < a.n; ++j) yi[j] = 0.f;
      for (int64_t p = 0; p < a.k; ++p) {
        const float xp = xi[p];
        const float* wp = a.w + p * a.n;
        for (int64_t j = 0; j < a.n; ++j) yi[j] += xp * wp[j];
      }
    } else {
      // Four outputs at a time: four independent chains of adds instead of one that waits on
      // each add's latency. Each output is still summed in p order, as the blocks above.
      int64_t j = 0;
      for (; j + 4 <= a.n; j += 4) {
        const float* w0 = a.w + j * a.k;
        const float* w1 = w0 + a.k;
        const float* w2 = w1 + a.k;
        const float* w3 = w2 + a.k;
        float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
        for (int64_t p = 0; p < a.k; ++p) {
          const float xp = xi[p];
          acc0 += xp * w0[p];
          acc1 += xp * w1[p];
          acc2 += xp * w2[p];
          acc3 += xp * w3[p];
        }
        yi[j] = acc0;
        yi[j + 1] = acc1;
        yi[j + 2] = acc2;
        yi[j + 3] = acc3;
      }
      for (; j < a.n; ++j) {
        const float* wj = a.w + j * a.k;
        float acc = 0.f;
        for (int64_t p = 0; p < a.k; ++p) acc += xi[p] * wj[p];
        yi[j] = acc;
      }
    }
    if (a.bias) {
      for (int64_t j = 0; j < a.n; ++j) yi[j] += a.bias[j];
    }
  }
}

}  // namespace

void GemmRef(const GemmRefArgs& args) {
  // Blocks of 8 rows over the pool's threads (small problems stay on this thread): each row's
  // result is the same bits in any block, so the split never shows in the output.
  const int64_t blocks = (args.m + 7) / 8;
  ParallelFor(blocks, 8 * args.n * args.k,
              [&args](int64_t b, int64_t e) { GemmRows(args, b * 8, std::min(args.m, e * 8)); });
}

void LinearRef(const float* x, const std::vector<float>& w, const std::vector<float>& b, float* y,
               int64_t m, int64_t n, int64_t k) {
  GemmRefArgs g;
  g.x = x;
  g.w = w.data();
  g.bias = b.empty() ? nullptr : b.data();
  g.y = y;
  g.m = m;
  g.n = n;
  g.k = k;
  GemmRef(g);
}

}  // namespace vlmserve
