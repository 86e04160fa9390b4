// The index helpers the CUDA kernels use (kernels/index_math.h), run on the CPU: each op rebuilt
// from the helper must equal the reference op in kernels/cpu exactly, so a GPU run cannot fail on
// an index.
#include "kernels/index_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/avg_pool.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/patch_embed.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/launch_util.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

TEST(IndexMathTest, Im2colThroughPatchPixelOffsetEqualsPatchEmbedRef) {
  struct Case {
    int64_t n, c, s, p, d;
  };
  for (Case k :
       {Case{1, 3, 28, 14, 5}, Case{2, 3, 42, 14, 7}, Case{1, 2, 12, 4, 3}, Case{1, 1, 6, 3, 2}}) {
    testing::Rng rng(static_cast<uint64_t>(k.s * 31 + k.p));
    const int64_t np = (k.s / k.p) * (k.s / k.p), cols = k.c * k.p * k.p;
    auto pixels = rng.Uniform(k.n * k.c * k.s * k.s), w = rng.Uniform(k.d * cols),
         b = rng.Uniform(k.d);
    std::vector<float> ref(static_cast<size_t>(k.n * np * k.d)), got(ref.size());
    PatchEmbedRef({pixels.data(), w.data(), b.data(), ref.data(), k.n, k.c, k.s, k.p, k.d});
    for (int64_t img = 0; img < k.n; ++img) {
      std::vector<float> patches(static_cast<size_t>(np * cols));
      for (int64_t q = 0; q < np; ++q)
        for (int64_t f = 0; f < cols; ++f)
          patches[q * cols + f] =
              pixels[img * k.c * k.s * k.s + idx::PatchPixelOffset(q, f, k.s, k.p)];
      GemmRefArgs g;
      g.x = patches.data();
      g.w = w.data();
      g.bias = b.data();
      g.y = got.data() + img * np * k.d;
      g.m = np;
      g.n = k.d;
      g.k = cols;
      GemmRef(g);
    }
    EXPECT_EQ(got, ref) << "s=" << k.s << " p=" << k.p << " c=" << k.c;
  }
}

TEST(IndexMathTest, PoolThroughPoolInputPatchEqualsAvgPoolRef) {
  struct Case {
    int64_t n, side, kernel, d;
  };
  for (Case k :
       {Case{1, 4, 2, 3}, Case{2, 8, 4, 5}, Case{1, 6, 3, 2}, Case{1, 5, 1, 4}, Case{1, 8, 8, 1}}) {
    testing::Rng rng(static_cast<uint64_t>(k.side * 7 + k.kernel));
    const int64_t out = (k.side / k.kernel) * (k.side / k.kernel);
    auto x = rng.Uniform(k.n * k.side * k.side * k.d);
    std::vector<float> ref(static_cast<size_t>(k.n * out * k.d)), got(ref.size());
    AvgPoolPatchesRef({x.data(), ref.data(), k.n, k.side, k.kernel, k.d});
    for (int64_t img = 0; img < k.n; ++img)
      for (int64_t t = 0; t < out; ++t)
        for (int64_t c = 0; c < k.d; ++c) {
          double acc = 0;
          for (int64_t a = 0; a < k.kernel * k.kernel; ++a)
            acc +=
                x[(img * k.side * k.side + idx::PoolInputPatch(t, a, k.side, k.kernel)) * k.d + c];
          got[(img * out + t) * k.d + c] =
              static_cast<float>(acc * (1.0 / static_cast<double>(k.kernel * k.kernel)));
        }
    EXPECT_EQ(got, ref) << "side=" << k.side << " kernel=" << k.kernel;
    for (int64_t t = 0; t < out; ++t)
      for (int64_t ky = 0; ky < k.kernel; ++ky)
        for (int64_t kx = 0; kx < k.kernel; ++kx)
          ASSERT_EQ(idx::PoolWindowStart(t, k.side, k.kernel) + ky * k.side + kx,
                    idx::PoolInputPatch(t, ky * k.kernel + kx, k.side, k.kernel));
  }
}

TEST(IndexMathTest, RopeThroughPartnerAndFreqIndexEqualsRopeRef) {
  for (int64_t head_dim : {2, 8, 72, 256}) {
    const int64_t tokens = 5, heads = 3;
    testing::Rng rng(static_cast<uint64_t>(head_dim));
    auto x = rng.Uniform(tokens * heads * head_dim);
    std::vector<int64_t> pos = {0, 1, 7, 4095, 131071};
    auto inv = RopeInvFreq(head_dim, 1e4, 1.0);
    std::vector<float> ref = x, got(x.size());
    RopeRef({ref.data(), pos.data(), inv.data(), tokens, heads, head_dim});
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < head_dim; ++i) {
          const float* row = x.data() + (t * heads + h) * head_dim;
          const float theta = static_cast<float>(pos[t]) * inv[idx::RopeFreqIndex(i, head_dim)];
          const float c = std::cos(theta), s = std::sin(theta);
          const float self = row[i], partner = row[idx::RopePartner(i, head_dim)];
          // First half: x·cos − partner·sin; second half: x·cos + partner·sin.
          got[(t * heads + h) * head_dim + i] =
              i < head_dim / 2 ? self * c - partner * s : self * c + partner * s;
        }
    EXPECT_EQ(got, ref) << "head_dim=" << head_dim;
  }
}

TEST(IndexMathTest, HeadRowOffsetWalksTheQAndKPartsOfAFusedRow) {
  // A fused qkv row of 2 tokens: q = 3 heads × 4, k = 1 head × 4, v = 1 head × 4 → stride 20.
  const int64_t stride = 20, dim = 4;
  std::vector<int64_t> q_rows, k_rows;
  for (int64_t r = 0; r < 6; ++r) q_rows.push_back(idx::HeadRowOffset(r, 3, dim, stride));
  for (int64_t r = 0; r < 2; ++r) k_rows.push_back(12 + idx::HeadRowOffset(r, 1, dim, stride));
  EXPECT_EQ(q_rows, (std::vector<int64_t>{0, 4, 8, 20, 24, 28}));
  EXPECT_EQ(k_rows, (std::vector<int64_t>{12, 32}));
  // heads = 1, stride = dim: a plain contiguous matrix.
  for (int64_t r = 0; r < 5; ++r) EXPECT_EQ(idx::HeadRowOffset(r, 1, 7, 7), r * 7);
}

TEST(LaunchPlanTest, RegisterRowPlansCoverEveryRowLength) {
  for (int64_t chunks = 1; chunks <= 2048; ++chunks) {
    const gpu::RowPlan p = gpu::PlanRegisterRow(/*rows=*/37, chunks);
    if (chunks > 1024) {  // over 8192 elements: the streaming kernel
      EXPECT_EQ(p.chunks_per_thread, 0) << chunks;
      continue;
    }
    ASSERT_GT(p.chunks_per_thread, 0) << chunks;
    EXPECT_TRUE(p.threads % 32 == 0 && p.threads >= 32 && p.threads <= 256) << chunks;
    const int64_t group = p.warp_per_row ? 32 : p.threads;
    EXPECT_GE(group * p.chunks_per_thread, chunks) << "chunks " << chunks << " not all covered";
    EXPECT_EQ(p.blocks, p.warp_per_row ? (37 + 7) / 8 : 37) << chunks;
    if (p.warp_per_row) {
      EXPECT_TRUE(p.chunks_per_thread == 1 || p.chunks_per_thread == 2 ||
                  p.chunks_per_thread == 4 || p.chunks_per_thread == 8);
    } else {
      EXPECT_TRUE(p.chunks_per_thread == 2 || p.chunks_per_thread == 4) << chunks;
    }
  }
  // Block-per-row kernels without registers: balanced passes.
  EXPECT_EQ(gpu::RowThreads(320), 160);
  EXPECT_EQ(gpu::RowThreads(144), 160);
  EXPECT_EQ(gpu::RowThreads(1280), 256);
  EXPECT_EQ(gpu::RowThreads(1), 32);
}

}  // namespace
}  // namespace vlmserve
