// The generic attention kernels (kernels/cuda/attention.h) against the CPU references on the same
// bf16 inputs, with the tolerance rule of the other ops: at most twice the worst error of the
// computation done as transformers' eager bf16 attention does it (bf16 scores, scaled in bf16,
// softmax in fp32 rounded to bf16, bf16 output). Paged: prefill chunks with an image block, a chunk
// at an offset, decode rows and forced runs in one launch, random physical pages, full and sliding
// layers, GQA 1/2/4/8, head_dim 16, 40, 72, 256; the same through the planned kernels
// (flash-decoding with splits, the head_dim-256 tensor-core prefill, the merge). Dense: N = 1, 7, 255, 256, 4096, 4097 through
// the generic kernel, and the head_dim-72 tensor-core path over its tile edges (N = 1 … 4097).
// Without a device these skip, except the argument checks.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention_plan.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cuda/attention.h"
#include "kernels/kv_layout.h"
#include "tests/kernels/gpu_test_util.h"
#include "tests/kernels/test_rng.h"

namespace vlmserve {
namespace {

using testing::DeviceBuffer;
using testing::ExpectWithinTwiceBf16Flow;
using testing::FromBf16;
using testing::ToBf16;

std::vector<float> RandBf16(testing::Rng& rng, int64_t n) {
  std::vector<float> v = rng.Uniform(n);
  for (float& f : v) f = RoundToBf16(f * 2.f);
  return v;
}

// transformers' eager attention in bf16 for one query: s_j = bf16(bf16(q·k_j) · scale), masked;
// p = bf16(softmax_fp32(s)); out = bf16(Σ p_j v_j) (fp32 accumulation).
void Bf16Flow(const float* q, const std::vector<const float*>& keys,
              const std::vector<const float*>& values, int64_t hd, float scale, float* out) {
  std::vector<float> s(keys.size());
  float max = -INFINITY;
  for (size_t j = 0; j < keys.size(); ++j) {
    float dot = 0.f;
    for (int64_t d = 0; d < hd; ++d) dot += q[d] * keys[j][d];
    s[j] = RoundToBf16(RoundToBf16(dot) * scale);
    max = std::max(max, s[j]);
  }
  float sum = 0.f;
  for (float& x : s) sum += (x = std::exp(x - max));
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.f;
  for (size_t j = 0; j < keys.size(); ++j) {
    const float p = RoundToBf16(s[j] / sum);
    for (int64_t d = 0; d < hd; ++d) out[d] += p * values[j][d];
  }
  for (int64_t d = 0; d < hd; ++d) out[d] = keys.empty() ? 0.f : RoundToBf16(out[d]);
}

struct Row {
  int64_t start, len;               // query positions [start, start + len)
  int64_t image_begin, image_end;   // image block (positions) inside the row, or empty
};

// How a paged case runs: the generic kernel (no plan), or a plan with these options (the
// flash-decoding kernel, the tensor-core prefill when `tensor_core`, splits as target_ctas and
// min_split_keys make them).
struct PagedMode {
  bool planned = false;
  bool tensor_core = false;
  int64_t target_ctas = 264, min_split_keys = 256;
};

const std::vector<Row> kMixedRows = {{0, 37, 10, 26}, {40, 9, 0, 0}, {300, 1, 0, 0}, {100, 3, 0, 0}};

void RunPaged(int64_t hkv, int64_t group, int64_t hd, bool sliding,
              const std::vector<Row>& rows = kMixedRows, int64_t window = 16,
              PagedMode mode = {}) {
  const int64_t hq = hkv * group;
  const float scale = 1.f / std::sqrt(float(hd));
  testing::Rng rng(static_cast<uint32_t>(hkv * 1000 + group * 100 + hd + sliding));
  // Pages: every row's sequence gets its own physical pages, shuffled; on sliding layers the pages
  // wholly before the window of the row's first query are released (-1), as the engine does.
  int64_t stride = 0, pages = 0;
  for (const Row& r : rows) {
    stride = std::max(stride, kv::PagesFor(r.start + r.len));
    pages += kv::PagesFor(r.start + r.len);
  }
  std::vector<int32_t> perm(static_cast<size_t>(pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
  std::vector<int32_t> tables(rows.size() * stride, 0);
  int64_t next = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int64_t p = 0; p < kv::PagesFor(rows[r].start + rows[r].len); ++p) {
      const int32_t page = perm[static_cast<size_t>(next++)];
      const bool released = sliding && kv::SlidingPageReleasable(p, rows[r].start, window);
      tables[r * stride + p] = released ? kv::kReleasedPage : page;
    }
  }
  const int64_t pool = pages * kv::kPageTokens * hkv * hd;
  const std::vector<float> k_pool = RandBf16(rng, pool), v_pool = RandBf16(rng, pool);
  std::vector<int32_t> row_tokens{0}, row_start, token_blocks;
  std::vector<attn::RowDesc> descs;
  for (const Row& r : rows) {
    descs.push_back({row_tokens.back(), r.len, r.start});
    row_tokens.push_back(row_tokens.back() + static_cast<int32_t>(r.len));
    row_start.push_back(static_cast<int32_t>(r.start));
    for (int64_t p = r.start; p < r.start + r.len; ++p) {
      token_blocks.push_back(p >= r.image_begin && p < r.image_end ? 0 : -1);
    }
  }
  const int64_t tokens = row_tokens.back();
  const std::vector<float> q = RandBf16(rng, tokens * hq * hd);

  // The reference and the bf16 flow, row by row.
  std::vector<float> ref(q.size()), flow(q.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    const Row& row = rows[r];
    const int64_t t0 = row_tokens[r];
    PagedAttentionRefArgs pa;
    pa.q = q.data() + t0 * hq * hd;
    pa.k_pool = k_pool.data();
    pa.v_pool = v_pool.data();
    pa.block_table = tables.data() + r * stride;
    pa.q_blocks = token_blocks.data() + t0;
    pa.o = ref.data() + t0 * hq * hd;
    pa.q_start = row.start;
    pa.sq = row.len;
    pa.hq = hq;
    pa.hkv = hkv;
    pa.hd = hd;
    pa.scale = scale;
    pa.sliding = sliding;
    pa.window = window;
    PagedAttentionRef(pa);
    for (int64_t i = 0; i < row.len; ++i) {
      const int64_t qpos = row.start + i;
      for (int64_t h = 0; h < hq; ++h) {
        std::vector<const float*> ks, vs;
        for (int64_t k = 0; k < row.start + row.len; ++k) {
          const int32_t kb = k >= row.start ? token_blocks[t0 + (k - row.start)] : -1;
          if (!kv::AttendAllowed(qpos, k, token_blocks[t0 + i], kb, sliding, window)) continue;
          const int64_t off = kv::PoolOffset(tables[r * stride + kv::LogicalPage(k)],
                                             kv::SlotInPage(k), h / group, 0, hkv, hd);
          ks.push_back(k_pool.data() + off);
          vs.push_back(v_pool.data() + off);
        }
        Bf16Flow(q.data() + ((t0 + i) * hq + h) * hd, ks, vs, hd, scale,
                 flow.data() + ((t0 + i) * hq + h) * hd);
      }
    }
  }

  DeviceBuffer<__nv_bfloat16> dq(ToBf16(q)), dk(ToBf16(k_pool)), dv(ToBf16(v_pool)),
      dout(q.size());
  DeviceBuffer<int32_t> drt(row_tokens), drs(row_start), dtab(tables), dblk(token_blocks);
  gpu::PagedAttentionArgs a;
  a.q = dq.get();
  a.k_pool = dk.get();
  a.v_pool = dv.get();
  a.o = dout.get();
  a.row_tokens = drt.get();
  a.row_start = drs.get();
  a.block_tables = dtab.get();
  a.token_blocks = dblk.get();
  a.table_stride = stride;
  a.rows = static_cast<int64_t>(rows.size());
  a.tokens = tokens;
  a.hq = hq;
  a.hkv = hkv;
  a.hd = hd;
  a.scale = scale;
  a.sliding = sliding;
  a.window = window;
  // The plan, uploaded as the runner does it.
  attn::PlanOptions po{hq, hkv, sliding, window, mode.tensor_core, mode.target_ctas,
                       mode.min_split_keys, 32};
  const attn::AttentionPlan plan = attn::PlanPagedAttention(descs, &token_blocks, po);
  DeviceBuffer<attn::WorkItem> ddec(plan.decode), dpre(plan.prefill);
  DeviceBuffer<attn::MergeItem> dmerge(plan.merges);
  DeviceBuffer<float> dws(static_cast<size_t>(attn::PlanWorkspaceBytes(plan, hq, hd) / 4));
  gpu::PagedAttentionPlanView view;
  view.decode = ddec.get();
  view.decode_items = static_cast<int64_t>(plan.decode.size());
  view.prefill = dpre.get();
  view.prefill_items = static_cast<int64_t>(plan.prefill.size());
  view.merges = dmerge.get();
  view.merge_items = static_cast<int64_t>(plan.merges.size());
  view.heads_per_cta = plan.heads_per_cta;
  view.query_vectors = plan.query_vectors;
  view.parts = plan.parts;
  view.workspace = dws.get();
  if (mode.planned) a.plan = &view;
  const Status st = gpu::PagedAttention(a, nullptr);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::string what =
      std::string(mode.planned ? "planned" : "generic") + (mode.tensor_core ? "+tc" : "") +
      " hkv=" + std::to_string(hkv) + " group=" + std::to_string(group) +
      " hd=" + std::to_string(hd) + (sliding ? " sliding" : " full") + " window=" +
      std::to_string(window) + " decode items=" + std::to_string(plan.decode.size()) +
      " prefill items=" + std::to_string(plan.prefill.size()) +
      " merges=" + std::to_string(plan.merges.size());
  ExpectWithinTwiceBf16Flow(what, FromBf16(dout.ToHost()), ref, flow);
}

TEST(CudaAttentionTest, PagedMatchesReferenceOverRowsMasksAndHeads) {
  SKIP_WITHOUT_GPU();
  for (bool sliding : {false, true}) {
    RunPaged(4, 2, 256, sliding);  // Gemma 3 4B: 8 query heads over 4
    RunPaged(1, 8, 72, sliding);
    RunPaged(2, 1, 16, sliding);
    RunPaged(2, 4, 40, sliding);
  }
}

// The planned kernels (flash-decoding, the head_dim-256 tensor-core prefill, the merge) against
// the same reference: decode rows at long contexts cut into splits, forced runs, prefill chunks
// with an image at 1, 7, 63, 64, 65 and 130 tokens, chunks at offsets inside pages, window edges,
// GQA 1/2/4/8, head_dim 256 and 128 / 72 / 40 on the decode kernel.
TEST(CudaAttentionTest, PlannedMatchesReferenceOverSplitsTilesAndWindows) {
  SKIP_WITHOUT_GPU();
  const std::vector<Row> decode = {{2047, 1, 0, 0}, {700, 1, 0, 0}, {15, 1, 0, 0},
                                   {16, 1, 0, 0},   {300, 5, 0, 0}, {0, 1, 0, 0}};
  const std::vector<Row> prefill = {{0, 130, 20, 84}, {200, 65, 0, 0}, {33, 64, 40, 97},
                                    {5, 63, 0, 0},    {70, 7, 70, 77}, {999, 17, 0, 0},
                                    {4000, 1, 0, 0}};
  const bool tc = gpu::PagedTensorCorePrefillSupported(256);
  if (testing::SmallShapesOnly()) {  // compute-sanitizer: every kernel once, with splits
    RunPaged(4, 2, 256, true, decode, 16, {true, tc, 5000, 64});
    RunPaged(4, 2, 256, true, prefill, 16, {true, tc, 264, 256});
    RunPaged(2, 2, 40, false, kMixedRows, 16, {true, false, 5000, 16});
    return;
  }
  for (bool sliding : {false, true}) {
    for (int64_t window : {int64_t{16}, int64_t{1024}}) {
      if (!sliding && window != 16) continue;
      for (auto [hkv, group] : {std::pair<int64_t, int64_t>{4, 2}, {8, 1}, {2, 4}, {1, 8}}) {
        // Splits: none (target 1), as a lone batch gets them (264), and many small ones.
        for (int64_t target : {int64_t{1}, int64_t{264}, int64_t{5000}}) {
          RunPaged(hkv, group, 256, sliding, decode, window, {true, tc, target, 64});
        }
        RunPaged(hkv, group, 256, sliding, prefill, window, {true, tc, 264, 256});
        RunPaged(hkv, group, 256, sliding, prefill, window, {true, false, 264, 64});
      }
    }
  }
  for (int64_t hd : {128, 72, 40}) {
    RunPaged(2, 2, hd, true, kMixedRows, 16, {true, false, 5000, 16});
    RunPaged(2, 2, hd, false, kMixedRows, 16, {true, false, 264, 256});
  }
}

TEST(CudaAttentionTest, PlannedRefusesPlansItCannotRun) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer<__nv_bfloat16> buf(4096);
  DeviceBuffer<int32_t> ints(64);
  DeviceBuffer<attn::WorkItem> items(4);
  gpu::PagedAttentionPlanView view;
  view.prefill = items.get();
  view.prefill_items = 1;
  gpu::PagedAttentionArgs a;
  a.q = a.k_pool = a.v_pool = buf.get();
  a.o = buf.get();
  a.row_tokens = a.row_start = a.block_tables = ints.get();
  a.table_stride = 1;
  a.rows = a.tokens = 1;
  a.hq = a.hkv = 1;
  a.hd = 128;  // prefill items need head_dim 256
  a.plan = &view;
  EXPECT_EQ(gpu::PagedAttention(a, nullptr).code(), StatusCode::kInvalidArgument);
  view.prefill_items = 0;
  view.heads_per_cta = 3;  // must divide hq / hkv = 1
  EXPECT_EQ(gpu::PagedAttention(a, nullptr).code(), StatusCode::kInvalidArgument);
}

// One dense case: `images` images of n tokens, `heads` heads of hd; q/k/v rows `stride` elements
// apart (0 = heads · hd; 3 · heads · hd = a fused qkv buffer), through `path`.
void RunDense(int64_t images, int64_t n, int64_t heads, int64_t hd, int64_t stride,
              gpu::AttentionPath path) {
  const float scale = 1.f / std::sqrt(float(hd));
  const int64_t row = stride ? stride : heads * hd;
  testing::Rng rng(static_cast<uint32_t>(n * 131 + hd + stride));
  // q, k, v as they lie in device memory (rows `row` apart; k and v start hd·heads in when fused).
  const int64_t k_at = stride ? heads * hd : 0, v_at = stride ? 2 * heads * hd : 0;
  const std::vector<float> qm = RandBf16(rng, images * n * row);
  const std::vector<float> km = stride ? qm : RandBf16(rng, images * n * row);
  const std::vector<float> vm = stride ? qm : RandBf16(rng, images * n * row);
  const int64_t count = images * n * heads * hd;
  std::vector<float> q(count), k(count), v(count), ref(count), flow(count);
  for (int64_t t = 0; t < images * n; ++t) {
    for (int64_t i = 0; i < heads * hd; ++i) {
      q[t * heads * hd + i] = qm[t * row + i];
      k[t * heads * hd + i] = km[t * row + k_at + i];
      v[t * heads * hd + i] = vm[t * row + v_at + i];
    }
  }
  for (int64_t img = 0; img < images; ++img) {
    AttentionRefArgs ra;
    const int64_t off = img * n * heads * hd;
    ra.q = q.data() + off;
    ra.k = k.data() + off;
    ra.v = v.data() + off;
    ra.o = ref.data() + off;
    ra.sq = ra.sk = n;
    ra.hq = ra.hkv = heads;
    ra.hd = hd;
    ra.scale = scale;
    AttentionRef(ra);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t h = 0; h < heads; ++h) {
        std::vector<const float*> ks, vs;
        for (int64_t j = 0; j < n; ++j) {
          ks.push_back(k.data() + off + (j * heads + h) * hd);
          vs.push_back(v.data() + off + (j * heads + h) * hd);
        }
        Bf16Flow(q.data() + off + (i * heads + h) * hd, ks, vs, hd, scale,
                 flow.data() + off + (i * heads + h) * hd);
      }
    }
  }
  DeviceBuffer<__nv_bfloat16> dq(ToBf16(qm)), dk(ToBf16(km)), dv(ToBf16(vm)), dout(count);
  gpu::DenseAttentionArgs a;
  a.q = dq.get();
  a.k = (stride ? dq.get() : dk.get()) + k_at;
  a.v = (stride ? dq.get() : dv.get()) + v_at;
  a.o = dout.get();
  a.images = images;
  a.n = n;
  a.heads = heads;
  a.hd = hd;
  a.token_stride = stride;
  a.scale = scale;
  a.path = path;
  const Status st = gpu::DenseAttention(a, nullptr);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ExpectWithinTwiceBf16Flow(std::string(path == gpu::AttentionPath::kFast ? "fast" : "generic") +
                                " dense images=" + std::to_string(images) +
                                " n=" + std::to_string(n) + " heads=" + std::to_string(heads) +
                                " hd=" + std::to_string(hd) + " stride=" + std::to_string(stride),
                            FromBf16(dout.ToHost()), ref, flow);
}

TEST(CudaAttentionTest, DenseMatchesReferenceOverImageSizes) {
  SKIP_WITHOUT_GPU();
  for (int64_t n : {1, 7, 255, 256, 4096, 4097}) {
    if (n > 256 && testing::SmallShapesOnly()) continue;
    RunDense(n > 1000 ? 1 : 2, n, n > 1000 ? 2 : 16, 72, 0, gpu::AttentionPath::kGeneric);
  }
  RunDense(2, 33, 3, 40, 0, gpu::AttentionPath::kGeneric);   // a tiny model's head_dim
  RunDense(1, 50, 2, 72, 3 * 2 * 72, gpu::AttentionPath::kGeneric);  // fused qkv rows
}

// The tensor-core path for head_dim 72 (attention_vision72.cu): every tile edge — one token, a
// partial first tile, exactly one and four tiles, one past — a batch of images, 16 heads, the
// 4B's 4096 tokens, and q/k/v inside one fused qkv buffer.
TEST(CudaAttentionTest, DenseFastPathMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (int64_t n : {1, 7, 63, 64, 65, 255, 256, 4096, 4097}) {
    if (n > 256 && testing::SmallShapesOnly()) continue;
    RunDense(n > 1000 ? 1 : 3, n, n > 1000 ? 2 : 16, 72, 0, gpu::AttentionPath::kFast);
  }
  RunDense(2, 130, 4, 72, 3 * 4 * 72, gpu::AttentionPath::kFast);
}

TEST(CudaAttentionTest, DenseFastPathRefusesWhatItCannotRun) {
  SKIP_WITHOUT_GPU();
  DeviceBuffer<__nv_bfloat16> buf(size_t{4096});
  gpu::DenseAttentionArgs a;
  a.q = a.k = a.v = buf.get();
  a.o = buf.get() + 2048;
  a.images = 1;
  a.n = 4;
  a.heads = 2;
  a.hd = 40;  // not 72
  a.path = gpu::AttentionPath::kFast;
  EXPECT_EQ(gpu::DenseAttention(a, nullptr).code(), StatusCode::kInvalidArgument);
  a.hd = 72;
  a.q = buf.get() + 1;  // not 16-byte aligned
  EXPECT_EQ(gpu::DenseAttention(a, nullptr).code(), StatusCode::kInvalidArgument);
  a.path = gpu::AttentionPath::kAuto;  // auto falls back to the generic kernel
  EXPECT_TRUE(gpu::DenseAttention(a, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// Argument checks run before any launch (also without a device).
TEST(CudaAttentionTest, BadArgumentsAreInvalidArgument) {
  gpu::PagedAttentionArgs p;
  EXPECT_EQ(gpu::PagedAttention(p, nullptr).code(), StatusCode::kInvalidArgument);
  gpu::DenseAttentionArgs d;
  __nv_bfloat16* fake = reinterpret_cast<__nv_bfloat16*>(16);
  d.q = d.k = d.v = fake;
  d.o = fake;
  d.images = 1;
  d.n = 4;
  d.heads = 2;
  d.hd = 258;
  const Status s = gpu::DenseAttention(d, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("head_dim must be even and at most 256"), std::string::npos);
  d.hd = 71;
  EXPECT_EQ(gpu::DenseAttention(d, nullptr).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vlmserve
