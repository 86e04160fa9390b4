// The CUDA ops of kernels/cuda, each against its CPU reference (kernels/cpu) on the same bf16
// inputs, over odd shapes (rows 1, 19, 99, 989; widths 72 … 10240). Tolerance: at most twice the
// worst error of transformers' bf16 flow (testing::ExpectWithinTwiceBf16Flow); the embedding
// gather is checked bit for bit. Without a device these skip, except the argument checks, which
// run before any launch.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/avg_pool.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/geglu.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/patch_embed.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/avg_pool.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/geglu.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/patch_embed.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

using testing::DeviceBuffer;
using testing::ExpectWithinTwiceBf16Flow;
using testing::FromBf16;
using testing::ToBf16;

constexpr int64_t kRows[] = {1, 19, 99, 989};
constexpr int64_t kWidths[] = {72, 256, 1152, 2560, 4304, 10240};
// The norms also at 512 and 1024: with 72, 256 and 1152 they reach every register layout (a warp
// per row holding 1, 2, 4 or 8 chunks; a block per row holding 2 or 4), and 10240 the streaming
// one.
constexpr int64_t kNormWidths[] = {72, 256, 512, 1024, 1152, 2560, 4304, 10240};

// Uniform values in [offset − scale, offset + scale), rounded to bf16 (what a bf16 tensor holds).
std::vector<float> RandBf16(testing::Rng& rng, int64_t n, float scale = 1.f, float offset = 0.f) {
  std::vector<float> v = rng.Uniform(n);
  for (float& f : v) f = RoundToBf16(f * scale + offset);
  return v;
}

std::vector<float> Rounded(std::vector<float> v) {
  for (float& f : v) f = RoundToBf16(f);
  return v;
}

std::string Shape(int64_t rows, int64_t width) {
  return "rows=" + std::to_string(rows) + " width=" + std::to_string(width);
}

void Sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

// ---- RMSNorm ----------------------------------------------------------------------------------

std::vector<float> RmsNormCpu(const std::vector<float>& x, const std::vector<float>& w,
                              int64_t rows, int64_t dim) {
  std::vector<float> y(x.size());
  RmsNormRef({x.data(), w.data(), y.data(), rows, dim, 1e-6f});
  return y;
}

TEST(CudaRmsNormTest, MatchesReferenceOverRowsAndWidths) {
  SKIP_WITHOUT_GPU();
  for (int64_t rows : kRows) {
    for (int64_t dim : kNormWidths) {
      testing::Rng rng(static_cast<uint64_t>(rows * 100003 + dim));
      auto x = RandBf16(rng, rows * dim, 2.f), w = RandBf16(rng, dim, 0.5f);
      DeviceBuffer<__nv_bfloat16> dx(ToBf16(x)), dw(ToBf16(w)), dy(x.size());
      gpu::RmsNormArgs a;
      a.x = dx.get();
      a.y = dy.get();
      a.w = dw.get();
      a.tokens = rows;
      a.dim = dim;
      ASSERT_TRUE(gpu::RmsNorm(a, nullptr).ok());
      Sync();
      const auto ref = RmsNormCpu(x, w, rows, dim);
      ExpectWithinTwiceBf16Flow("RmsNorm " + Shape(rows, dim), FromBf16(dy.ToHost()), ref,
                                Rounded(ref));
    }
  }
}

TEST(CudaRmsNormTest, ScalarPathInPlaceOnUnalignedRows) {
  SKIP_WITHOUT_GPU();
  // dim 19 and a buffer starting one element in: the V = 1 path, in place.
  for (int64_t dim : {19, 256}) {
    const int64_t rows = 33;
    testing::Rng rng(static_cast<uint64_t>(dim));
    auto x = RandBf16(rng, rows * dim + 1), w = RandBf16(rng, dim, 0.5f);
    DeviceBuffer<__nv_bfloat16> dx(ToBf16(x)), dw(ToBf16(w));
    gpu::RmsNormArgs a;
    a.x = dx.get() + 1;
    a.y = dx.get() + 1;
    a.w = dw.get();
    a.tokens = rows;
    a.dim = dim;
    ASSERT_TRUE(gpu::RmsNorm(a, nullptr).ok());
    Sync();
    auto out = FromBf16(dx.ToHost());
    EXPECT_EQ(out[0], x[0]) << "the element before the rows was touched";
    const std::vector<float> xin(x.begin() + 1, x.end()), got(out.begin() + 1, out.end());
    const auto ref = RmsNormCpu(xin, w, rows, dim);
    ExpectWithinTwiceBf16Flow("RmsNorm in place, unaligned, dim=" + std::to_string(dim), got, ref,
                              Rounded(ref));
  }
}

TEST(CudaRmsNormTest, PerHeadQAndKNormsInsideAFusedQkvBuffer) {
  SKIP_WITHOUT_GPU();
  // Gemma 3 4B: q 8 heads, k 4, v 4, head_dim 256; one shared [256] weight per projection.
  const int64_t q_heads = 8, kv_heads = 4, hd = 256, width = (q_heads + 2 * kv_heads) * hd;
  for (int64_t tokens : kRows) {
    testing::Rng rng(static_cast<uint64_t>(tokens));
    auto qkv = RandBf16(rng, tokens * width, 3.f), wq = RandBf16(rng, hd, 0.5f),
         wk = RandBf16(rng, hd, 0.5f);
    DeviceBuffer<__nv_bfloat16> d(ToBf16(qkv)), dwq(ToBf16(wq)), dwk(ToBf16(wk));
    gpu::RmsNormArgs q;
    q.x = q.y = d.get();
    q.w = dwq.get();
    q.tokens = tokens;
    q.heads = q_heads;
    q.dim = hd;
    q.x_stride = q.y_stride = width;
    gpu::RmsNormArgs k = q;
    k.x = k.y = d.get() + q_heads * hd;
    k.w = dwk.get();
    k.heads = kv_heads;
    ASSERT_TRUE(gpu::RmsNorm(q, nullptr).ok());
    ASSERT_TRUE(gpu::RmsNorm(k, nullptr).ok());
    Sync();
    const auto got = FromBf16(d.ToHost());
    // Expected: every q head and k head normalised on its own, v untouched.
    std::vector<float> ref = qkv;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < q_heads + kv_heads; ++h) {
        const int64_t off = t * width + h * hd;
        std::vector<float> head(qkv.begin() + off, qkv.begin() + off + hd);
        auto n = RmsNormCpu(head, h < q_heads ? wq : wk, 1, hd);
        std::copy(n.begin(), n.end(), ref.begin() + off);
      }
      for (int64_t i = (q_heads + kv_heads) * hd; i < width; ++i) {
        ASSERT_EQ(got[t * width + i], qkv[t * width + i]) << "v changed at token " << t;
      }
    }
    ExpectWithinTwiceBf16Flow("per-head RmsNorm tokens=" + std::to_string(tokens), got, ref,
                              Rounded(ref));
  }
}

TEST(CudaRmsNormTest, AddRmsNormFusesResidualAndNextNorm) {
  SKIP_WITHOUT_GPU();
  for (int64_t rows : kRows) {
    for (int64_t dim : kNormWidths) {
      testing::Rng rng(static_cast<uint64_t>(rows * 7919 + dim));
      auto a = RandBf16(rng, rows * dim, 4.f), res = RandBf16(rng, rows * dim, 8.f);
      auto wp = RandBf16(rng, dim, 0.5f), wn = RandBf16(rng, dim, 0.5f);
      DeviceBuffer<__nv_bfloat16> da(ToBf16(a)), dres(ToBf16(res)), dwp(ToBf16(wp)),
          dwn(ToBf16(wn)), dy(a.size());
      gpu::AddRmsNormArgs args;
      args.a = da.get();
      args.w_post = dwp.get();
      args.residual = dres.get();
      args.w_next = dwn.get();
      args.y_next = dy.get();
      args.rows = rows;
      args.dim = dim;
      ASSERT_TRUE(gpu::AddRmsNorm(args, nullptr).ok());
      Sync();
      // Exact: fp32 sum of the exact norm; flow: transformers' roundings after the norm and the
      // add.
      auto n = RmsNormCpu(a, wp, rows, dim);
      std::vector<float> r_ref(res.size()), r_flow(res.size());
      for (size_t i = 0; i < res.size(); ++i) {
        r_ref[i] = res[i] + n[i];
        r_flow[i] = RoundToBf16(res[i] + RoundToBf16(n[i]));
      }
      const auto y_ref = RmsNormCpu(r_ref, wn, rows, dim),
                 y_flow = Rounded(RmsNormCpu(r_flow, wn, rows, dim));
      ExpectWithinTwiceBf16Flow("AddRmsNorm residual " + Shape(rows, dim), FromBf16(dres.ToHost()),
                                r_ref, r_flow);
      ExpectWithinTwiceBf16Flow("AddRmsNorm next norm " + Shape(rows, dim), FromBf16(dy.ToHost()),
                                y_ref, y_flow);
    }
  }
}

// ---- LayerNorm --------------------------------------------------------------------------------

TEST(CudaLayerNormTest, MatchesReferenceOverRowsAndWidths) {
  SKIP_WITHOUT_GPU();
  for (int64_t rows : kRows) {
    for (int64_t dim : kNormWidths) {
      testing::Rng rng(static_cast<uint64_t>(rows * 31337 + dim));
      // A mean far from zero: two-pass statistics must not lose the variance.
      auto x = RandBf16(rng, rows * dim, 2.f, 3.f), w = RandBf16(rng, dim, 1.f, 1.f),
           b = RandBf16(rng, dim);
      DeviceBuffer<__nv_bfloat16> dx(ToBf16(x)), dw(ToBf16(w)), db(ToBf16(b)), dy(x.size());
      ASSERT_TRUE(
          gpu::LayerNorm({dx.get(), dw.get(), db.get(), dy.get(), rows, dim, 1e-6f}, nullptr).ok());
      Sync();
      std::vector<float> ref(x.size());
      LayerNormRef({x.data(), w.data(), b.data(), ref.data(), rows, dim, 1e-6f});
      ExpectWithinTwiceBf16Flow("LayerNorm " + Shape(rows, dim), FromBf16(dy.ToHost()), ref,
                                Rounded(ref));
    }
  }
}

// ---- RoPE -------------------------------------------------------------------------------------

TEST(CudaRopeTest, MatchesReferenceForBothLayerTypes) {
  SKIP_WITHOUT_GPU();
  struct Heads {
    int64_t heads, head_dim, extra;
  };  // extra: unused elements per token row (strided layout)
  for (Heads hs : {Heads{8, 256, 0}, Heads{4, 256, 2048}, Heads{16, 72, 0}, Heads{3, 72, 8}}) {
    for (int64_t tokens : kRows) {
      for (bool global : {true, false}) {
        testing::Rng rng(static_cast<uint64_t>(tokens * 131 + hs.heads * 7 + hs.head_dim + global));
        const int64_t stride = hs.heads * hs.head_dim + hs.extra;
        auto x = RandBf16(rng, tokens * stride, 3.f);
        std::vector<int32_t> pos(static_cast<size_t>(tokens));
        for (int64_t t = 0; t < tokens; ++t)
          pos[t] = t < 2 ? static_cast<int32_t>(t) : static_cast<int32_t>(rng.Next() % 131072);
        const auto inv =
            global ? RopeInvFreq(hs.head_dim, 1e6, 8.0) : RopeInvFreq(hs.head_dim, 1e4, 1.0);
        DeviceBuffer<__nv_bfloat16> dx(ToBf16(x));
        DeviceBuffer<int32_t> dpos(pos);
        DeviceBuffer<float> dinv(inv);
        gpu::RopeArgs a;
        a.x = dx.get();
        a.positions = dpos.get();
        a.inv_freq = dinv.get();
        a.tokens = tokens;
        a.heads = hs.heads;
        a.head_dim = hs.head_dim;
        a.token_stride = stride;
        ASSERT_TRUE(gpu::Rope(a, nullptr).ok());
        Sync();
        const auto all = FromBf16(dx.ToHost());
        // Gather the rotated heads; the padding after them must be untouched.
        const int64_t used = hs.heads * hs.head_dim;
        std::vector<float> in(static_cast<size_t>(tokens * used)), got(in.size());
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t i = 0; i < used; ++i) {
            in[t * used + i] = x[t * stride + i];
            got[t * used + i] = all[t * stride + i];
          }
          for (int64_t i = used; i < stride; ++i) ASSERT_EQ(all[t * stride + i], x[t * stride + i]);
        }
        std::vector<float> ref = in;
        std::vector<int64_t> pos64(pos.begin(), pos.end());
        RopeRef({ref.data(), pos64.data(), inv.data(), tokens, hs.heads, hs.head_dim});
        // transformers' flow: cos/sin rounded to bf16, each product and the sum rounded.
        std::vector<float> flow(in.size());
        const int64_t half = hs.head_dim / 2;
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t h = 0; h < hs.heads; ++h) {
            const float* r = in.data() + (t * hs.heads + h) * hs.head_dim;
            float* f = flow.data() + (t * hs.heads + h) * hs.head_dim;
            for (int64_t i = 0; i < half; ++i) {
              const float theta = static_cast<float>(pos[t]) * inv[i];
              const float c = RoundToBf16(std::cos(theta)), s = RoundToBf16(std::sin(theta));
              f[i] = RoundToBf16(RoundToBf16(r[i] * c) + RoundToBf16(-r[i + half] * s));
              f[i + half] = RoundToBf16(RoundToBf16(r[i + half] * c) + RoundToBf16(r[i] * s));
            }
          }
        }
        ExpectWithinTwiceBf16Flow(
            "Rope tokens=" + std::to_string(tokens) + " heads=" + std::to_string(hs.heads) +
                " head_dim=" + std::to_string(hs.head_dim) + (global ? " global" : " local"),
            got, ref, flow);
      }
    }
  }
}

// ---- GeGLU ------------------------------------------------------------------------------------

TEST(CudaGegluTest, MatchesReferenceOverRowsAndWidths) {
  SKIP_WITHOUT_GPU();
  for (int64_t rows : kRows) {
    for (int64_t inter : kWidths) {
      testing::Rng rng(static_cast<uint64_t>(rows * 65537 + inter));
      auto gu = RandBf16(rng, rows * 2 * inter, 4.f);
      DeviceBuffer<__nv_bfloat16> dgu(ToBf16(gu)), dy(rows * inter);
      ASSERT_TRUE(gpu::Geglu({dgu.get(), dy.get(), rows, inter}, nullptr).ok());
      Sync();
      std::vector<float> gate(static_cast<size_t>(rows * inter)), up(gate.size()), ref(gate.size()),
          flow(gate.size());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < inter; ++i) {
          gate[r * inter + i] = gu[r * 2 * inter + i];
          up[r * inter + i] = gu[r * 2 * inter + inter + i];
        }
      }
      GegluRef(gate.data(), up.data(), ref.data(), rows * inter);
      for (size_t i = 0; i < flow.size(); ++i)
        flow[i] = RoundToBf16(RoundToBf16(GeluTanh(gate[i])) * up[i]);
      ExpectWithinTwiceBf16Flow("Geglu " + Shape(rows, inter), FromBf16(dy.ToHost()), ref, flow);
    }
  }
}

// ---- average pooling --------------------------------------------------------------------------

TEST(CudaAvgPoolTest, MatchesReferenceOnGridsAndKernels) {
  SKIP_WITHOUT_GPU();
  struct Grid {
    int64_t side, kernel;
  };
  for (Grid g : {Grid{64, 4}, Grid{8, 2}, Grid{6, 3}, Grid{4, 1}, Grid{16, 16}}) {
    for (int64_t n : {1, 2}) {
      for (int64_t d : {19, 72, 1152}) {  // 19: the scalar path
        testing::Rng rng(static_cast<uint64_t>(g.side * 97 + g.kernel * 13 + n + d));
        const int64_t out = (g.side / g.kernel) * (g.side / g.kernel);
        auto x = RandBf16(rng, n * g.side * g.side * d, 5.f);
        DeviceBuffer<__nv_bfloat16> dx(ToBf16(x)), dy(n * out * d);
        ASSERT_TRUE(
            gpu::AvgPoolPatches({dx.get(), dy.get(), n, g.side, g.kernel, d}, nullptr).ok());
        Sync();
        std::vector<float> ref(static_cast<size_t>(n * out * d));
        AvgPoolPatchesRef({x.data(), ref.data(), n, g.side, g.kernel, d});
        ExpectWithinTwiceBf16Flow("AvgPoolPatches side=" + std::to_string(g.side) +
                                      " kernel=" + std::to_string(g.kernel) +
                                      " n=" + std::to_string(n) + " d=" + std::to_string(d),
                                  FromBf16(dy.ToHost()), ref, Rounded(ref));
      }
    }
  }
}

// ---- embedding --------------------------------------------------------------------------------

TEST(CudaEmbeddingTest, GatherTimesBf16ScaleBitExactWithSkipsAndBadIds) {
  SKIP_WITHOUT_GPU();
  const int64_t vocab = 1000;
  for (int64_t tokens : kRows) {
    for (int64_t dim : kWidths) {
      testing::Rng rng(static_cast<uint64_t>(tokens * 17 + dim));
      auto table = RandBf16(rng, vocab * dim, 0.1f);
      std::vector<int32_t> ids(static_cast<size_t>(tokens));
      std::vector<uint8_t> skip(ids.size());
      for (int64_t t = 0; t < tokens; ++t) {
        ids[t] = static_cast<int32_t>(rng.Next() % vocab);
        skip[t] = (t % 5 == 3) ? 1 : 0;  // image positions
      }
      if (tokens > 2)
        ids[1] = -1,
        ids[2] = static_cast<int32_t>(vocab);  // the caller's bug: zero rows, no stray read
      const float scale = RoundToBf16(std::sqrt(static_cast<float>(dim)));
      std::vector<float> sentinel(static_cast<size_t>(tokens * dim), 7.f);
      DeviceBuffer<__nv_bfloat16> dt(ToBf16(table)), dy(ToBf16(sentinel));
      DeviceBuffer<int32_t> dids(ids);
      DeviceBuffer<uint8_t> dskip(skip);
      gpu::EmbeddingArgs a;
      a.table = dt.get();
      a.ids = dids.get();
      a.skip = dskip.get();
      a.y = dy.get();
      a.tokens = tokens;
      a.dim = dim;
      a.vocab = vocab;
      a.scale = scale;
      ASSERT_TRUE(gpu::Embedding(a, nullptr).ok());
      Sync();
      const auto got = FromBf16(dy.ToHost());
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t i = 0; i < dim; ++i) {
          float want;
          if (skip[t])
            want = 7.f;
          else if (ids[t] < 0 || ids[t] >= vocab)
            want = 0.f;
          else
            want =
                RoundToBf16(table[ids[t] * dim + i] * scale);  // transformers: bf16 · bf16 → bf16
          ASSERT_EQ(got[t * dim + i], want)
              << "token " << t << " element " << i << " " << Shape(tokens, dim);
        }
      }
      // The same through the CPU reference (fp32 product, rounded) for the valid, unskipped rows.
      std::vector<float> ref(sentinel);
      std::vector<int32_t> safe = ids;
      std::vector<uint8_t> skip_bad = skip;
      for (int64_t t = 0; t < tokens; ++t) {
        if (ids[t] < 0 || ids[t] >= vocab) safe[t] = 0, skip_bad[t] = 1;
      }
      EmbeddingRef({table.data(), safe.data(), skip_bad.data(), ref.data(), tokens, dim, scale});
      for (int64_t t = 0; t < tokens; ++t) {
        if (skip_bad[t]) continue;
        for (int64_t i = 0; i < dim; ++i)
          ASSERT_EQ(got[t * dim + i], RoundToBf16(ref[t * dim + i]));
      }
    }
  }
}

// ---- GEMM with bias and addend, patch embedding ------------------------------------------------

TEST(CudaGemmEpilogueTest, BiasAndAddendInPlaceAndOnUnalignedSubBuffers) {
  SKIP_WITHOUT_GPU();
  auto gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
  struct Case {
    int64_t m, n, k, offset;
    bool bias, add, in_place;
  };
  for (Case c :
       {Case{19, 1152, 1152, 0, true, true, true}, Case{99, 4304, 1152, 0, true, false, false},
        Case{1, 2560, 2048, 0, false, true, true}, Case{16, 72, 588, 3, true, true, false},
        Case{989, 256, 72, 8, true, true, true}}) {
    testing::Rng rng(static_cast<uint64_t>(c.m * 3 + c.n * 5 + c.k));
    auto x = RandBf16(rng, c.m * c.k), w = RandBf16(rng, c.n * c.k, 0.1f), b = RandBf16(rng, c.n);
    auto add = RandBf16(rng, c.m * c.n, 2.f);
    // `offset` elements in: sub-buffers that are not 256-byte aligned (one image's rows).
    std::vector<float> xo(static_cast<size_t>(c.offset), 0.f), yo = xo;
    xo.insert(xo.end(), x.begin(), x.end());
    yo.insert(yo.end(), add.begin(), add.end());
    DeviceBuffer<__nv_bfloat16> dx(ToBf16(xo)), dw(ToBf16(w)), db(ToBf16(b)), dadd(ToBf16(add)),
        dy(ToBf16(yo));
    GemmArgs g;
    g.x = dx.get() + c.offset;
    g.w = dw.get();
    g.y = dy.get() + c.offset;
    g.m = c.m;
    g.n = c.n;
    g.k = c.k;
    g.bias = c.bias ? db.get() : nullptr;
    g.add = c.add ? (c.in_place ? g.y : dadd.get()) : nullptr;
    Status st = (*gemm)->Run(g, nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
    Sync();
    const auto all = FromBf16(dy.ToHost());
    const std::vector<float> got(all.begin() + c.offset, all.end());
    std::vector<float> ref(static_cast<size_t>(c.m * c.n)), flow(ref.size());
    GemmRefArgs r;
    r.x = x.data();
    r.w = w.data();
    r.y = ref.data();
    r.m = c.m;
    r.n = c.n;
    r.k = c.k;
    r.bias = c.bias ? b.data() : nullptr;
    GemmRef(r);
    for (size_t i = 0; i < ref.size(); ++i) {
      // transformers: Linear (with bias) rounds, then the add rounds again.
      flow[i] = c.add ? RoundToBf16(RoundToBf16(ref[i]) + add[i]) : RoundToBf16(ref[i]);
      if (c.add) ref[i] += add[i];
    }
    ExpectWithinTwiceBf16Flow("Gemm m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                                  " k=" + std::to_string(c.k) + (c.bias ? " +bias" : "") +
                                  (c.add ? " +add" : "") + " offset=" + std::to_string(c.offset),
                              got, ref, flow);
  }
}

TEST(CudaPatchEmbedTest, MatchesConvPlusBiasPlusPositions) {
  SKIP_WITHOUT_GPU();
  auto gemm = CublasLtGemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status().ToString();
  struct Case {
    int64_t n, s, p, d;
  };
  for (Case c :
       {Case{1, 56, 14, 72}, Case{2, 224, 14, 1152}, Case{1, 896, 14, 1152}, Case{3, 12, 4, 19}}) {
    const int64_t np = (c.s / c.p) * (c.s / c.p), cols = 3 * c.p * c.p;
    testing::Rng rng(static_cast<uint64_t>(c.s * 11 + c.d));
    auto pixels =
        rng.Uniform(c.n * 3 * c.s * c.s);  // float32 as the processor makes them, not bf16
    auto w = RandBf16(rng, c.d * cols, 0.05f), b = RandBf16(rng, c.d),
         pos = RandBf16(rng, np * c.d);
    DeviceBuffer<float> dpix(pixels);
    DeviceBuffer<__nv_bfloat16> dw(ToBf16(w)), db(ToBf16(b)), dpos(ToBf16(pos)),
        dpatches(c.n * np * cols), dy(c.n * np * c.d);
    gpu::PatchEmbedArgs a{dpix.get(), dw.get(), db.get(), dpos.get(), dpatches.get(), dy.get(), c.n,
                          3,          c.s,      c.p,      c.d};
    Status st = gpu::PatchEmbed(**gemm, a, nullptr);
    ASSERT_TRUE(st.ok()) << st.ToString();
    Sync();
    // Reference: the convolution on bf16-rounded pixels (spec §2.4) + bias, then + positions.
    std::vector<float> ref(static_cast<size_t>(c.n * np * c.d)), flow(ref.size());
    const auto pix_bf16 = Rounded(pixels);
    PatchEmbedRef({pix_bf16.data(), w.data(), b.data(), ref.data(), c.n, 3, c.s, c.p, c.d});
    for (size_t i = 0; i < ref.size(); ++i) {
      const float p = pos[i % static_cast<size_t>(np * c.d)];
      flow[i] = RoundToBf16(RoundToBf16(ref[i]) + p);
      ref[i] += p;
    }
    ExpectWithinTwiceBf16Flow("PatchEmbed n=" + std::to_string(c.n) + " s=" + std::to_string(c.s) +
                                  " p=" + std::to_string(c.p) + " d=" + std::to_string(c.d),
                              FromBf16(dy.ToHost()), ref, flow);
  }
}

// ---- argument checks (no device needed: they fail before any launch) ----------------------------

TEST(CudaOpsArgsTest, BadArgumentsAreInvalidArgumentBeforeAnyLaunch) {
  __nv_bfloat16* p = reinterpret_cast<__nv_bfloat16*>(uintptr_t{4096});  // never dereferenced
  gpu::RmsNormArgs rn;
  rn.x = p;
  rn.y = p;
  rn.tokens = 1;
  rn.dim = 8;
  EXPECT_EQ(gpu::RmsNorm(rn, nullptr).code(), StatusCode::kInvalidArgument);  // w null
  rn.w = p;
  rn.x_stride = 4;
  EXPECT_EQ(gpu::RmsNorm(rn, nullptr).code(), StatusCode::kInvalidArgument);  // stride < dim
  gpu::AddRmsNormArgs ar{p, p, p, p, nullptr, 1, 8, 1e-6f};
  EXPECT_EQ(gpu::AddRmsNorm(ar, nullptr).code(),
            StatusCode::kInvalidArgument);  // w_next without y_next
  EXPECT_EQ(gpu::LayerNorm({p, p, nullptr, p, 1, 0, 1e-6f}, nullptr).code(),
            StatusCode::kInvalidArgument);
  int32_t* ip = reinterpret_cast<int32_t*>(uintptr_t{4096});
  float* fp = reinterpret_cast<float*>(uintptr_t{4096});
  gpu::RopeArgs ro{p, ip, fp, 1, 1, 7, 0};
  EXPECT_EQ(gpu::Rope(ro, nullptr).code(), StatusCode::kInvalidArgument);  // odd head_dim
  EXPECT_EQ(gpu::Geglu({nullptr, p, 1, 8}, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu::AvgPoolPatches({p, p, 1, 6, 4, 8}, nullptr).code(),
            StatusCode::kInvalidArgument);  // 4 ∤ 6
  gpu::EmbeddingArgs em;
  em.table = p;
  em.ids = ip;
  em.y = p;
  em.tokens = 1;
  em.dim = 8;
  em.vocab = 0;
  EXPECT_EQ(gpu::Embedding(em, nullptr).code(), StatusCode::kInvalidArgument);
  gpu::PatchEmbedArgs pe{fp, p, p, p, p, p, 1, 3, 30, 14, 8};
  EXPECT_EQ(gpu::Im2colBf16(pe, nullptr).code(), StatusCode::kInvalidArgument);  // 14 ∤ 30
  // Empty work is fine and launches nothing.
  rn.x_stride = 0;
  rn.tokens = 0;
  EXPECT_TRUE(gpu::RmsNorm(rn, nullptr).ok());
}

}  // namespace
}  // namespace vlmserve
