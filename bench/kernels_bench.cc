// Memory-bound kernel benchmark: the ops of kernels/cuda on the shapes of gemma-3-4b-it (a
// ~330-token prefill, one 896² image) and on larger batches, as GB/s of the bytes each op must move
// (read once + written once), next to a device-to-device copy measured in the same process (the
// practical bandwidth ceiling). Method as gemm_bench.cc: warm-up, L2 flushed before every timed
// repeat, CUDA-event median. The PyTorch baseline for the same names and byte counts is
// bench/torch_kernels_baseline.py (scripts/gpu/check.sh runs both). Also the attention kernels:
// the vision tower's (TFLOP/s) and the decoder's paged attention (decode as GB/s of KV read
// against the copy, prefill as TFLOP/s).
//
//   vlmserve_bench_kernels [--repeats N]   → one JSON object on stdout
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/cuda_timer.h"
#include "kernels/cpu/rope.h"
#include "kernels/attention_plan.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/avg_pool.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/geglu.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/patch_embed.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sample.h"
#include "kernels/kv_layout.h"

namespace {

using bf16 = __nv_bfloat16;
using vlmserve::Status;
namespace gpu = vlmserve::gpu;

// Device allocations freed at exit; filled with a small finite bf16 pattern (values don't change
// the cost of these kernels).
struct Arena {
  std::vector<void*> ptrs;
  template <typename T>
  T* Alloc(int64_t n, int fill = 0x3c) {
    void* p = nullptr;
    BENCH_CHECK_CUDA(cudaMalloc(&p, static_cast<size_t>(n) * sizeof(T)));
    BENCH_CHECK_CUDA(cudaMemset(p, fill, static_cast<size_t>(n) * sizeof(T)));
    ptrs.push_back(p);
    return static_cast<T*>(p);
  }
  ~Arena() {
    for (void* p : ptrs) cudaFree(p);
  }
};

bool first_result = true;
void Report(const char* name, const std::string& shape, double bytes,
            std::pair<double, double> us) {
  std::printf(
      "%s  {\"name\": \"%s\", \"shape\": \"%s\", \"bytes\": %.0f, \"median_us\": %.2f, \"min_us\": "
      "%.2f, "
      "\"gbps\": %.1f}",
      first_result ? "" : ",\n", name, shape.c_str(), bytes, us.first, us.second,
      bytes / (us.first * 1e-6) / 1e9);
  first_result = false;
}

// ---- the decoder's paged attention (issue 24), Gemma 3 4B heads: 8 query heads over 4 KV heads,
// head_dim 256, pages of 16 tokens, local layers' window 1024 ----
constexpr int64_t kPHq = 8, kPHkv = 4, kPHd = 256, kPWindow = 1024;

struct PagedSetup {
  std::vector<int32_t> row_tokens{0}, row_start, tables, blocks;
  std::vector<vlmserve::attn::RowDesc> descs;
  int64_t stride = 0, tokens = 0;
};

// `rows` sequences, each a row of `len` query tokens ending at position `context` − 1, their
// pages laid out one sequence after another; an image block over positions [ib, ie) of each row.
PagedSetup MakePaged(int64_t rows, int64_t context, int64_t len, int64_t ib, int64_t ie) {
  PagedSetup s;
  s.stride = vlmserve::kv::PagesFor(context);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t start = context - len;
    s.descs.push_back({s.tokens, len, start});
    s.tokens += len;
    s.row_tokens.push_back(static_cast<int32_t>(s.tokens));
    s.row_start.push_back(static_cast<int32_t>(start));
    for (int64_t p = 0; p < s.stride; ++p) s.tables.push_back(static_cast<int32_t>(r * s.stride + p));
    for (int64_t p = start; p < context; ++p) s.blocks.push_back(p >= ib && p < ie ? 0 : -1);
  }
  return s;
}

template <typename T>
T* Upload(Arena& arena, const std::vector<T>& v) {
  T* d = arena.Alloc<T>(std::max<int64_t>(1, static_cast<int64_t>(v.size())));
  BENCH_CHECK_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Times PagedAttention over `s` (planned, or the generic kernel when !planned).
std::pair<double, double> TimePaged(vlmserve::bench::CudaTimer& timer, Arena& arena,
                                    const PagedSetup& s, bool sliding, bool planned, bf16* k_pool,
                                    bf16* v_pool) {
  namespace attn = vlmserve::attn;
  auto* q = arena.Alloc<bf16>(s.tokens * kPHq * kPHd);
  auto* o = arena.Alloc<bf16>(s.tokens * kPHq * kPHd);
  attn::PlanOptions po;
  po.hq = kPHq;
  po.hkv = kPHkv;
  po.sliding = sliding;
  po.window = kPWindow;
  po.tensor_core_prefill = gpu::PagedTensorCorePrefillSupported(kPHd);
  po.target_ctas = gpu::PagedDecodeTargetCtas();
  const attn::AttentionPlan plan = attn::PlanPagedAttention(s.descs, &s.blocks, po);
  gpu::PagedAttentionPlanView view;
  view.decode = Upload(arena, plan.decode);
  view.decode_items = static_cast<int64_t>(plan.decode.size());
  view.prefill = Upload(arena, plan.prefill);
  view.prefill_items = static_cast<int64_t>(plan.prefill.size());
  view.merges = Upload(arena, plan.merges);
  view.merge_items = static_cast<int64_t>(plan.merges.size());
  view.heads_per_cta = plan.heads_per_cta;
  view.query_vectors = plan.query_vectors;
  view.parts = plan.parts;
  view.workspace = arena.Alloc<float>(std::max<int64_t>(1, attn::PlanWorkspaceBytes(plan, kPHq, kPHd) / 4));
  gpu::PagedAttentionArgs a;
  a.q = q;
  a.k_pool = k_pool;
  a.v_pool = v_pool;
  a.o = o;
  a.row_tokens = Upload(arena, s.row_tokens);
  a.row_start = Upload(arena, s.row_start);
  a.block_tables = Upload(arena, s.tables);
  a.token_blocks = Upload(arena, s.blocks);
  a.table_stride = s.stride;
  a.rows = static_cast<int64_t>(s.descs.size());
  a.tokens = s.tokens;
  a.hq = kPHq;
  a.hkv = kPHkv;
  a.hd = kPHd;
  a.scale = 1.f / 16.f;  // query_pre_attn_scalar 256
  a.sliding = sliding;
  a.window = kPWindow;
  a.plan = planned ? &view : nullptr;
  return timer.Time(planned ? "paged_planned" : "paged_generic",
                    [&] { return gpu::PagedAttention(a, nullptr); });
}

// Decode: batch × context, local and global layers, as GB/s of the K and V bytes the step must
// read (batch · keys · 4 KV heads · 256 · 2 bytes · 2); the generic kernel once, at the target
// point (32 × 2048). Prefill: one 330- and one 2048-token chunk with a 256-token image span at
// positions 10..265, as TFLOP/s of the allowed (query, key) pairs (4 · pairs · 8 heads · 256).
// torch: bench/torch_kernels_baseline.py, same names.
void PagedAttentionBench(vlmserve::bench::CudaTimer& timer, Arena& arena, double copy_gbps) {
  std::printf("\"paged_attention\": [\n");
  bool first = true;
  auto report = [&](const std::string& name, const std::string& shape, const char* unit,
                    double amount, std::pair<double, double> us) {
    const double rate = amount / (us.first * 1e-6) / 1e9;  // GB/s or GFLOP/s
    std::printf("%s  {\"name\": \"%s\", \"shape\": \"%s\", \"median_us\": %.2f, \"min_us\": %.2f, ",
                first ? "" : ",\n", name.c_str(), shape.c_str(), us.first, us.second);
    if (std::strcmp(unit, "gbps") == 0) {
      std::printf("\"kv_bytes\": %.0f, \"gbps\": %.1f, \"pct_copy\": %.1f}", amount, rate,
                  100.0 * rate / copy_gbps);
    } else {
      std::printf("\"flop\": %.0f, \"tflops\": %.1f}", amount, rate / 1e3);
    }
    first = false;
  };
  // One pool big enough for the largest case (64 × 8192 tokens), shared by every case.
  const int64_t max_tokens = 64 * 8192, row = kPHkv * kPHd;
  auto* k_pool = arena.Alloc<bf16>(max_tokens * row);
  auto* v_pool = arena.Alloc<bf16>(max_tokens * row);
  for (bool sliding : {false, true}) {
    for (int64_t batch : {int64_t{1}, int64_t{8}, int64_t{32}, int64_t{64}}) {
      for (int64_t context : {int64_t{512}, int64_t{2048}, int64_t{8192}}) {
        const PagedSetup s = MakePaged(batch, context, 1, 0, 0);
        const int64_t keys = sliding ? std::min(context, kPWindow) : context;
        const double bytes = 2.0 * batch * keys * row * 2;
        const std::string name = std::string("decode_") + (sliding ? "local_" : "global_") +
                                 std::to_string(batch) + "x" + std::to_string(context);
        const std::string shape = std::to_string(batch) + "x" + std::to_string(context);
        report(name, shape, "gbps", bytes, TimePaged(timer, arena, s, sliding, true, k_pool, v_pool));
        if (batch == 32 && context == 2048) {
          report(name + "_generic", shape, "gbps", bytes,
                 TimePaged(timer, arena, s, sliding, false, k_pool, v_pool));
        }
      }
    }
  }
  for (bool sliding : {false, true}) {
    for (int64_t len : {int64_t{330}, int64_t{2048}}) {
      const PagedSetup s = MakePaged(1, len, len, 10, 266);
      double pairs = 0;
      for (int64_t qp = 0; qp < len; ++qp) {
        for (int64_t kp = 0; kp < len; ++kp) {
          const int32_t qb = s.blocks[static_cast<size_t>(qp)], kb = s.blocks[static_cast<size_t>(kp)];
          pairs += vlmserve::kv::AttendAllowed(qp, kp, qb, kb, sliding, kPWindow) ? 1 : 0;
        }
      }
      const double flop = 4.0 * pairs * kPHq * kPHd;
      const std::string name =
          std::string("prefill_") + (sliding ? "local_" : "global_") + std::to_string(len);
      for (bool planned : {true, false}) {
        report(name + (planned ? "" : "_generic"), std::to_string(len), "tflops", flop,
               TimePaged(timer, arena, s, sliding, planned, k_pool, v_pool));
      }
    }
  }
  std::printf("\n]\n");
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 20;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::max(1, std::atoi(argv[i + 1]));
  auto devices = vlmserve::DescribeCudaDevices();
  if (!devices.ok()) {
    std::printf("{\"bench\": \"kernels\", \"skipped\": \"%s\"}\n",
                devices.status().message().c_str());
    return 0;
  }
  vlmserve::bench::CudaTimer timer(repeats);
  std::string dev = *devices;
  dev.erase(std::remove(dev.begin(), dev.end(), '\n'), dev.end());
  auto gemm = vlmserve::CublasLtGemm::Create();
  if (!gemm.ok()) {
    std::fprintf(stderr, "%s\n", gemm.status().ToString().c_str());
    return 1;
  }

  // The practical ceiling: a 256 MiB device-to-device copy (read + write = 512 MiB moved).
  Arena arena;
  const int64_t copy_bytes = int64_t{256} << 20;
  auto* src = arena.Alloc<uint8_t>(copy_bytes);
  auto* dst = arena.Alloc<uint8_t>(copy_bytes);
  auto copy_us = timer.Time("copy", [&] {
    return cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, nullptr) == cudaSuccess
               ? Status::Ok()
               : vlmserve::InternalError("cudaMemcpyAsync");
  });
  std::printf(
      "{\"bench\": \"kernels\", \"device\": \"%s\", \"repeats\": %d, \"copy_gbps\": %.1f, "
      "\"results\": [\n",
      dev.c_str(), timer.repeats(), 2.0 * copy_bytes / (copy_us.first * 1e-6) / 1e9);

  const int64_t D = 2560, kQHeads = 8, kKvHeads = 4, kHd = 256,
                kQkv = (kQHeads + 2 * kKvHeads) * kHd;
  for (int64_t rows : {int64_t{330}, int64_t{16384}}) {
    const std::string sh = std::to_string(rows) + "x" + std::to_string(D);
    const double tensor = 2.0 * rows * D;  // bytes of one [rows, D] bf16 tensor
    auto* x = arena.Alloc<bf16>(rows * D);
    auto* y = arena.Alloc<bf16>(rows * D);
    auto* r = arena.Alloc<bf16>(rows * D);
    auto* w = arena.Alloc<bf16>(D);
    gpu::RmsNormArgs rn;
    rn.x = x;
    rn.y = y;
    rn.w = w;
    rn.tokens = rows;
    rn.dim = D;
    Report(("rms_norm_" + std::to_string(rows)).c_str(), sh, 2 * tensor,
           timer.Time("rms_norm", [&] { return gpu::RmsNorm(rn, nullptr); }));
    gpu::AddRmsNormArgs ar{x, w, r, w, y, rows, D, 1e-6f};
    Report(("add_rms_norm_" + std::to_string(rows)).c_str(), sh, 4 * tensor,
           timer.Time("add_rms_norm", [&] { return gpu::AddRmsNorm(ar, nullptr); }));

    // q-norm in place on the q part of a fused qkv buffer, then RoPE on it.
    auto* qkv = arena.Alloc<bf16>(rows * kQkv);
    const std::string qsh =
        std::to_string(rows) + "x" + std::to_string(kQHeads) + "x" + std::to_string(kHd);
    const double q_bytes = 2.0 * rows * kQHeads * kHd;
    gpu::RmsNormArgs qn;
    qn.x = qn.y = qkv;
    qn.w = w;
    qn.tokens = rows;
    qn.heads = kQHeads;
    qn.dim = kHd;
    qn.x_stride = qn.y_stride = kQkv;
    Report(("qk_norm_" + std::to_string(rows)).c_str(), qsh, 2 * q_bytes,
           timer.Time("qk_norm", [&] { return gpu::RmsNorm(qn, nullptr); }));
    std::vector<int32_t> pos_host(static_cast<size_t>(rows));
    for (int64_t t = 0; t < rows; ++t) pos_host[t] = static_cast<int32_t>(t);
    auto* pos = arena.Alloc<int32_t>(rows);
    BENCH_CHECK_CUDA(
        cudaMemcpy(pos, pos_host.data(), rows * sizeof(int32_t), cudaMemcpyHostToDevice));
    const auto inv_host = vlmserve::RopeInvFreq(kHd, 1e4, 1.0);
    auto* inv = arena.Alloc<float>(kHd / 2);
    BENCH_CHECK_CUDA(
        cudaMemcpy(inv, inv_host.data(), inv_host.size() * sizeof(float), cudaMemcpyHostToDevice));
    gpu::RopeArgs ro{qkv, pos, inv, rows, kQHeads, kHd, kQkv};
    Report(("rope_q_" + std::to_string(rows)).c_str(), qsh, 2 * q_bytes,
           timer.Time("rope", [&] { return gpu::Rope(ro, nullptr); }));

    const int64_t I = 10240;
    auto* gu = arena.Alloc<bf16>(rows * 2 * I);
    auto* act = arena.Alloc<bf16>(rows * I);
    Report(("geglu_" + std::to_string(rows)).c_str(),
           std::to_string(rows) + "x" + std::to_string(I), 3.0 * 2 * rows * I,
           timer.Time("geglu", [&] {
             return gpu::Geglu({gu, act, rows, I}, nullptr);
           }));

    const int64_t vocab = 262208;
    std::vector<int32_t> ids_host(static_cast<size_t>(rows));
    for (int64_t t = 0; t < rows; ++t) ids_host[t] = static_cast<int32_t>((t * 7919) % vocab);
    auto* ids = arena.Alloc<int32_t>(rows);
    BENCH_CHECK_CUDA(
        cudaMemcpy(ids, ids_host.data(), rows * sizeof(int32_t), cudaMemcpyHostToDevice));
    auto* table = arena.Alloc<bf16>(vocab * D);
    gpu::EmbeddingArgs em;
    em.table = table;
    em.ids = ids;
    em.y = y;
    em.tokens = rows;
    em.dim = D;
    em.vocab = vocab;
    em.scale = 50.5f;
    Report(("embedding_" + std::to_string(rows)).c_str(), sh, 2 * tensor,
           timer.Time("embedding", [&] { return gpu::Embedding(em, nullptr); }));
  }

  // Vision: one image (4096 patches) and a batch of 4.
  const int64_t V = 1152, kPatches = 4096;
  for (int64_t images : {int64_t{1}, int64_t{4}}) {
    const int64_t rows = images * kPatches;
    auto* x = arena.Alloc<bf16>(rows * V);
    auto* y = arena.Alloc<bf16>(rows * V);
    auto* w = arena.Alloc<bf16>(V);
    auto* b = arena.Alloc<bf16>(V);
    Report(("layer_norm_" + std::to_string(rows)).c_str(),
           std::to_string(rows) + "x" + std::to_string(V), 2.0 * 2 * rows * V,
           timer.Time("layer_norm", [&] {
             return gpu::LayerNorm({x, w, b, y, rows, V, 1e-6f}, nullptr);
           }));
    Report(("avg_pool_" + std::to_string(images)).c_str(),
           std::to_string(images) + "x64x64x" + std::to_string(V),
           2.0 * rows * V + 2.0 * images * 256 * V, timer.Time("avg_pool", [&] {
             return gpu::AvgPoolPatches({x, y, images, 64, 4, V}, nullptr);
           }));
    // Patch embedding: float pixels in, im2col + GEMM (bias, positions) out; reported as time and
    // the bytes of its input, output and weight (it is compute-light: 5.5 GFLOP per image).
    const int64_t cols = 3 * 14 * 14;
    auto* pixels = arena.Alloc<float>(images * 3 * 896 * 896, 0);
    auto* pw = arena.Alloc<bf16>(V * cols);
    auto* pos = arena.Alloc<bf16>(kPatches * V);
    auto* patches = arena.Alloc<bf16>(rows * cols);
    gpu::PatchEmbedArgs pe{pixels, pw, b, pos, patches, y, images, 3, 896, 14, V};
    Report(("patch_embed_" + std::to_string(images)).c_str(), std::to_string(images) + "x3x896x896",
           4.0 * images * 3 * 896 * 896 + 2.0 * rows * V + 2.0 * V * cols + 2.0 * kPatches * V,
           timer.Time("patch_embed", [&] { return gpu::PatchEmbed(**gemm, pe, nullptr); }));
  }
  // Greedy sampling of a step's rows on the 262,208-token vocabulary (token + logprob per row,
  // no mask); bytes: the logits read once (the kernel reads them twice, the second time mostly
  // from L2).
  for (int64_t rows : {int64_t{1}, int64_t{8}, int64_t{64}}) {
    const int64_t vocab = 262208;
    auto* logits = arena.Alloc<bf16>(rows * vocab);
    std::vector<int32_t> row_ids(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) row_ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    auto* d_rows = arena.Alloc<int32_t>(rows);
    BENCH_CHECK_CUDA(cudaMemcpy(d_rows, row_ids.data(), row_ids.size() * 4, cudaMemcpyHostToDevice));
    auto* results = arena.Alloc<gpu::GreedyResult>(rows);
    gpu::GreedySampleArgs gs;
    gs.logits = logits;
    gs.rows = d_rows;
    gs.out = results;
    gs.samples = gs.logit_rows = rows;
    gs.vocab = vocab;
    Report(("greedy_sample_" + std::to_string(rows)).c_str(),
           std::to_string(rows) + "x" + std::to_string(vocab), 2.0 * rows * vocab,
           timer.Time("greedy_sample", [&] { return gpu::GreedySample(gs, nullptr); }));
  }
  std::printf("\n],\n");

  // The vision tower's attention (SigLIP of the 4B: 16 heads × 4096 tokens × head_dim 72 per
  // image), both paths, as TFLOP/s of the exact d = 72 work: 4 · images · heads · n² · 72 (QKᵀ and
  // PV, 2 FLOP per multiply-add). torch's SDPA backends on the same shapes: bench_torch_e2e.json.
  std::printf("\"attention\": [\n");
  first_result = true;
  for (int64_t images : {int64_t{1}, int64_t{4}}) {
    const int64_t n = 4096, heads = 16, hd = 72, count = images * n * heads * hd;
    auto* q = arena.Alloc<bf16>(count);
    auto* k = arena.Alloc<bf16>(count);
    auto* v = arena.Alloc<bf16>(count);
    auto* o = arena.Alloc<bf16>(count);
    for (auto path : {gpu::AttentionPath::kFast, gpu::AttentionPath::kGeneric}) {
      gpu::DenseAttentionArgs a;
      a.q = q;
      a.k = k;
      a.v = v;
      a.o = o;
      a.images = images;
      a.n = n;
      a.heads = heads;
      a.hd = hd;
      a.scale = 1.f / std::sqrt(72.f);
      a.path = path;
      const char* which = path == gpu::AttentionPath::kFast ? "fast" : "generic";
      const auto us = timer.Time(which, [&] { return gpu::DenseAttention(a, nullptr); });
      const double flop = 4.0 * images * heads * double(n) * n * hd;
      std::printf("%s  {\"name\": \"vision_attention_%s_%lld\", \"shape\": \"%lldx%lldx%lldx%lld\", "
                  "\"median_us\": %.1f, \"min_us\": %.1f, \"tflops\": %.1f}",
                  first_result ? "" : ",\n", which, static_cast<long long>(images),
                  static_cast<long long>(images), static_cast<long long>(heads),
                  static_cast<long long>(n), static_cast<long long>(hd), us.first, us.second,
                  flop / (us.first * 1e-6) / 1e12);
      first_result = false;
    }
  }
  std::printf("\n],\n");
  PagedAttentionBench(timer, arena, 2.0 * copy_bytes / (copy_us.first * 1e-6) / 1e9);
  std::printf("}\n");
  return 0;
}
