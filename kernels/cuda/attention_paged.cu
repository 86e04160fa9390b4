// The decoder's attention over the paged KV cache, planned (kernels/attention_plan.h; issue 24).
// NOT YET RUN ON A GPU: written in a CPU session; the plan and the merge rule are CPU-tested
// (tests/kernels/attention_plan_test.cc emulates these kernels' arithmetic against
// PagedAttentionRef), the kernels themselves are checked against the reference by
// tests/kernels/cuda_attention_test.cc (Planned*) in the GPU check.
//
// Flash-decoding (PagedDecodeKernel), for decode rows and forced runs: a CTA per (item, group of
// heads_per_cta query heads of one KV head). Its query vectors (q_count tokens × those heads, at
// most 8) stay in registers, each lane holding 8 consecutive dimensions (one 16-byte load per key
// row: a warp reads a 256-dim K or V row in one 512-byte transaction). The 4 warps take every
// 4th key of the item's range, four keys per iteration for more bytes in flight; each key's K and V
// row is read once and used by every query vector of the CTA — GQA's heads share the read. Scores
// are warp sums; the softmax is online in the log2 domain (scale · log2 e folded into q). The
// warps' states meet in shared memory; an unsplit item writes bf16 output, a split one writes
// its (m, l, acc) partial, and PagedMergeKernel joins the splits exactly (softmax_merge.h).
//
// Prefill (PagedPrefill256Kernel), head_dim 256 on tensor cores: FlashAttention-2's scheme with
// mma.sync m16n8k16 as in attention_vision72.cu. A CTA = 4 warps = a 64-token query tile of one
// query head; Q [64 × 256] stays in shared memory (its fragments are re-read per k-step: holding
// them would cost 64 registers next to O's 128); K and V tiles of 32 keys gathered from the pages
// by cp.async (rows outside the item's range or on a released page become zeros and are masked);
// S = Q Kᵀ (4 n-tiles), the mask kv::AttendAllowed per element, online softmax with a guard for
// rows that have no allowed key yet, P as bf16 A fragments, O += P V (32 n-tiles), fp32 O divided
// by the row sum once. Shared rows are 264 bf16 (528 bytes) apart: 16-byte aligned, and the 8 rows
// of an ldmatrix fall in distinct bank groups. 67.7 KB of dynamic shared memory: three CTAs per
// H100/H200 SM. First version: one K/V stage (no double buffering) and one head per CTA — the
// GPU run decides what to tune.
#include "kernels/cuda/attention_paged.h"

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/mma_ptx.cuh"
#include "kernels/kv_layout.h"
#include "kernels/mma_fragments.h"
#include "kernels/softmax_merge.h"

namespace vlmserve::gpu {
namespace {

using bf16 = __nv_bfloat16;
constexpr float kLog2e = 1.4426950408889634f;

// Where a plan's partials live in the workspace: acc [parts][hq][hd], then m and l [parts][hq].
struct Partials {
  float *acc, *m, *l;
  __host__ __device__ Partials(float* ws, int64_t parts, int64_t hq, int64_t hd)
      : acc(ws), m(ws + parts * hq * hd), l(ws + parts * hq * hd + parts * hq) {}
};

__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// ---------------------------------------------------------------- flash-decoding

constexpr int kDecWarps = 4;
constexpr int kUnroll = 4;  // keys in flight per warp

// kQv: the register arrays' size, the plan's query_vectors rounded up to 1, 2, 4 or 8 (Gemma 3 4B
// decode: 2 heads × 1 token — 8 would cost ~170 more registers per thread and half the
// occupancy).
template <int kQv>
__global__ void __launch_bounds__(kDecWarps * 32)
    PagedDecodeKernel(PagedAttentionArgs a, PagedAttentionPlanView p) {
  static_assert(kQv >= 1 && kQv <= attn::kMaxQueryVectors, "");
  __shared__ float s_acc[kDecWarps][kQv][256];
  __shared__ float s_m[kDecWarps][kQv], s_l[kDecWarps][kQv];
  const attn::WorkItem w = p.decode[blockIdx.x];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int hd = static_cast<int>(a.hd), hq = static_cast<int>(a.hq);
  const int hpc = static_cast<int>(p.heads_per_cta);
  const int h0 = blockIdx.y * hpc, kvh = h0 / (hq / static_cast<int>(a.hkv));
  const int d0 = lane * 8;
  const bool active = d0 < hd;  // head_dim < 256: the upper lanes hold nothing
  const int64_t first_token = a.row_tokens[w.row], start = a.row_start[w.row];
  const int nv = w.q_count * hpc;  // query vector v = token v / hpc, head h0 + v % hpc
  if (nv > kQv) __trap();          // a plan whose query_vectors understates its items: a bug
  const float scale_log2 = a.scale * kLog2e;

  float q[kQv][8], acc[kQv][8], m[kQv], l[kQv];
  int64_t qpos[kQv];
  int32_t qb[kQv];
#pragma unroll
  for (int v = 0; v < kQv; ++v) {
    m[v] = -INFINITY;
    l[v] = 0.f;
    qpos[v] = 0;
    qb[v] = -1;
#pragma unroll
    for (int i = 0; i < 8; ++i) q[v][i] = acc[v][i] = 0.f;
    if (v < nv) {
      const int64_t t = first_token + w.q_begin + v / hpc;
      qpos[v] = start + w.q_begin + v / hpc;
      qb[v] = a.token_blocks ? a.token_blocks[t] : -1;
      if (active) {
        LoadBf16<8>(a.q + (t * hq + h0 + v % hpc) * hd + d0, q[v]);
#pragma unroll
        for (int i = 0; i < 8; ++i) q[v][i] *= scale_log2;
      }
    }
  }

  const int32_t* table = a.block_tables + int64_t{w.row} * a.table_stride;
  // One key: its K and V rows (8 dims per lane, raw bf16), then every query vector that may read it.
  auto key = [&](int64_t k, const uint4& kraw, const uint4& vraw) {
    float kf[8], vf[8];
    WidenBf16x8(kraw, kf);
    WidenBf16x8(vraw, vf);
    const int32_t kb = a.token_blocks && k >= start ? a.token_blocks[first_token + (k - start)] : -1;
#pragma unroll
    for (int v = 0; v < kQv; ++v) {
      // Uniform across the warp (same key, same query): the shuffles below never diverge.
      if (v >= nv || !kv::AttendAllowed(qpos[v], k, qb[v], kb, a.sliding, a.window)) continue;
      float part = 0.f;
#pragma unroll
      for (int i = 0; i < 8; ++i) part += q[v][i] * kf[i];
      const float s = WarpSum(part);
      const float m_new = fmaxf(m[v], s);
      const float corr = exp2f(m[v] - m_new), pr = exp2f(s - m_new);
      l[v] = l[v] * corr + pr;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[v][i] = acc[v][i] * corr + pr * vf[i];
      m[v] = m_new;
    }
  };
  // kUnroll keys per warp and iteration, all their loads issued before any math: the bytes in
  // flight per SM are what a memory-bound kernel's bandwidth is made of.
  for (int64_t k = w.k_begin + warp; k < w.k_end; k += kUnroll * kDecWarps) {
    uint4 kr[kUnroll], vr[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t ku = k + u * kDecWarps;
      kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      if (active && ku < w.k_end) {
        const int64_t off =
            kv::PoolOffset(table[kv::LogicalPage(ku)], kv::SlotInPage(ku), kvh, d0, a.hkv, hd);
        kr[u] = *reinterpret_cast<const uint4*>(a.k_pool + off);
        vr[u] = *reinterpret_cast<const uint4*>(a.v_pool + off);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (k + u * kDecWarps < w.k_end) key(k + u * kDecWarps, kr[u], vr[u]);
    }
  }

  // The warps' states meet: weights 2^(m_w − M) (softmax_merge.h), then output or a partial.
#pragma unroll
  for (int v = 0; v < kQv; ++v) {
    if (v >= nv) continue;
    if (active) {
#pragma unroll
      for (int i = 0; i < 8; ++i) s_acc[warp][v][d0 + i] = acc[v][i];
    }
    if (lane == 0) {
      s_m[warp][v] = m[v];
      s_l[warp][v] = l[v];
    }
  }
  __syncthreads();
  const Partials part(p.workspace, p.parts, hq, hd);
  for (int i = threadIdx.x; i < nv * hd; i += kDecWarps * 32) {
    const int v = i / hd, d = i % hd;
    const auto m_at = [&](int wi) { return s_m[wi][v]; };
    const float mx = attn::MergedMax(kDecWarps, m_at);
    float lsum = 0.f, asum = 0.f;
#pragma unroll
    for (int wi = 0; wi < kDecWarps; ++wi) {
      const float wt = attn::PartWeight(s_m[wi][v], mx);
      lsum += wt * s_l[wi][v];
      asum += wt * s_acc[wi][v][d];
    }
    const int j = v / hpc, h = h0 + v % hpc;
    const int64_t t = first_token + w.q_begin + j;
    if (w.part < 0) {
      a.o[(t * hq + h) * hd + d] = __float2bfloat16_rn(attn::Normalize(asum, lsum));
    } else {
      const int64_t slot = w.part + int64_t{j} * w.splits;
      part.acc[(slot * hq + h) * hd + d] = asum;
      if (d == 0) {
        part.m[slot * hq + h] = mx;
        part.l[slot * hq + h] = lsum;
      }
    }
  }
}

// One (merge item, query head) per CTA, a thread per dimension.
__global__ void PagedMergeKernel(PagedAttentionArgs a, PagedAttentionPlanView p) {
  const attn::MergeItem mi = p.merges[blockIdx.x];
  const int64_t h = blockIdx.y, hq = a.hq, hd = a.hd;
  const int d = threadIdx.x;
  if (d >= hd) return;
  const Partials part(p.workspace, p.parts, hq, hd);
  const auto m_at = [&](int i) { return part.m[(mi.first_part + i) * hq + h]; };
  const float mx = attn::MergedMax(mi.parts, m_at);
  float lsum = 0.f, asum = 0.f;
  for (int i = 0; i < mi.parts; ++i) {
    const int64_t slot = mi.first_part + i;
    const float wt = attn::PartWeight(m_at(i), mx);
    lsum += wt * part.l[slot * hq + h];
    asum += wt * part.acc[(slot * hq + h) * hd + d];
  }
  a.o[(mi.token * hq + h) * hd + d] = __float2bfloat16_rn(attn::Normalize(asum, lsum));
}

// ---------------------------------------------------------------- prefill, head_dim 256

namespace pf {
constexpr int kD = 256;
constexpr int kRow = kD + 8;  // shared row stride (elements)
constexpr int kBM = 64;       // query tokens per CTA (4 warps × 16)
constexpr int kBN = 32;       // keys per tile (two pages)
constexpr int kThreads = 128;
constexpr int kChunks = kD / 8;  // 16-byte chunks per row
struct __align__(16) Smem {
  bf16 q[kBM * kRow];
  bf16 k[kBN * kRow];
  bf16 v[kBN * kRow];
  int32_t kb[kBN];  // image block of each key of the tile (-1 text)
};
static_assert(attn::kPrefillTileTokens == kBM, "the plan's tiles are this kernel's");
}  // namespace pf

__global__ void __launch_bounds__(pf::kThreads)
    PagedPrefill256Kernel(PagedAttentionArgs a, PagedAttentionPlanView p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace pf;  // NOLINT
  using namespace ptx;  // NOLINT
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const attn::WorkItem w = p.prefill[blockIdx.x];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t h = blockIdx.y, hq = a.hq, hkv = a.hkv, kvh = h / (hq / hkv);
  const int64_t first_token = a.row_tokens[w.row], start = a.row_start[w.row];
  const int64_t t0 = first_token + w.q_begin;  // the tile's first token
  const int32_t* table = a.block_tables + int64_t{w.row} * a.table_stride;

  for (int i = tid; i < kBM * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const bool valid = r < w.q_count;
    const bf16* src = a.q + ((t0 + (valid ? r : 0)) * hq + h) * kD + c * 8;
    CpAsync16(sm.q + r * kRow + c * 8, src, valid);
  }
  // This lane's two query rows (C fragment rows lane/4 and lane/4 + 8 of its warp's 16).
  int64_t qpos[2];
  int32_t qb[2];
  bool qvalid[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = warp * 16 + mma::CRow(lane, 2 * i);
    qvalid[i] = r < w.q_count;
    qpos[i] = start + w.q_begin + r;
    qb[i] = qvalid[i] && a.token_blocks ? a.token_blocks[t0 + r] : -1;
  }

  const float scale_log2 = a.scale * kLog2e;
  float o[32][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  // Tiles of 32 keys from the page pair holding k_begin (keys before it are never allowed: the
  // plan's k_begin is the first key of the tile's first query, and later queries start later).
  for (int64_t k0 = w.k_begin - w.k_begin % kBN; k0 < w.k_end; k0 += kBN) {
    __syncthreads();  // every warp is done with the previous tile
    for (int i = tid; i < kBN * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const int64_t key = k0 + r;
      const bool in_range = key >= w.k_begin && key < w.k_end;
      const int32_t page = in_range ? table[kv::LogicalPage(key)] : 0;
      const bool valid = in_range && page >= 0;
      const int64_t off =
          valid ? kv::PoolOffset(page, kv::SlotInPage(key), kvh, c * 8, hkv, kD) : 0;
      CpAsync16(sm.k + r * kRow + c * 8, a.k_pool + off, valid);
      CpAsync16(sm.v + r * kRow + c * 8, a.v_pool + off, valid);
    }
    if (tid < kBN) {
      const int64_t key = k0 + tid;
      sm.kb[tid] = a.token_blocks && key >= start && key < w.k_end
                       ? a.token_blocks[first_token + (key - start)]
                       : -1;
    }
    CpAsyncWaitAll();
    __syncthreads();

    // S = Q Kᵀ: this warp's 16 rows × 32 keys (4 n-tiles), 16 k-steps over the head dimensions.
    float s[4][4] = {};
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      uint32_t qa[4];
      Ldsm4(qa, sm.q + mma::ARow(warp * 16, lane) * kRow + mma::ACol(ks * 16, lane));
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        uint32_t b[4];
        Ldsm4(b, sm.k + mma::BKeyRow(np * 16, lane) * kRow + mma::BKeyCol(ks * 16, lane));
        Mma(s[2 * np], qa, b[0], b[1]);
        Mma(s[2 * np + 1], qa, b[2], b[3]);
      }
    }
    // The mask, then scale into the log2 domain.
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1, c = j * 8 + mma::CCol(lane, e);
        const int64_t key = k0 + c;
        const bool ok = qvalid[i] && key >= w.k_begin && key < w.k_end &&
                        kv::AttendAllowed(qpos[i], key, qb[i], sm.kb[c], a.sliding, a.window);
        s[j][e] = ok ? s[j][e] * scale_log2 : -INFINITY;
      }
    }
    // Online softmax (a row with no allowed key so far keeps m = −inf, p = 0).
    flash::OnlineSoftmax(s, m, l, o);
    // O += P V: two k-steps of 16 keys, 32 n-tiles of 8 output dimensions (two per ldmatrix).
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t pa[4];
      flash::PFragment(s, kk, pa);
      flash::AccumulatePV<16>(pa, sm.v + mma::VKeyRow(kk * 16, lane) * kRow, lane, o);
    }
  }

  // Row sums over the quad, then bf16 pairs to global memory (a row with no key writes zeros).
  flash::QuadRowSums(l);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    if (!qvalid[half]) continue;
    const int r = warp * 16 + mma::CRow(lane, 2 * half);
    const float inv = l[half] > 0.f ? 1.f / l[half] : 0.f;
    bf16* out = a.o + ((t0 + r) * hq + h) * kD + mma::CCol(lane, 0);
#pragma unroll
    for (int t = 0; t < 32; ++t) {
      *reinterpret_cast<__nv_bfloat162*>(out + t * 8) =
          __floats2bfloat162_rn(o[t][2 * half] * inv, o[t][2 * half + 1] * inv);
    }
  }
#else
  __trap();  // launched only on sm_80+ (CheckPlannedPagedAttention)
#endif
}


}  // namespace

bool PagedTensorCorePrefillSupported(int64_t head_dim) {
  return head_dim == pf::kD && ptx::CurrentSmMajor() >= 8;
}

int64_t PagedDecodeTargetCtas() {
  static const int64_t target = [] {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      return int64_t{264};
    }
    return int64_t{2} * sms;
  }();
  return target;
}

Status CheckPlannedPagedAttention(const PagedAttentionArgs& a) {
  constexpr const char* kOp = "PagedAttention";
  const PagedAttentionPlanView& p = *a.plan;
  if (a.hd % 8 != 0) return BadArgs(kOp, "the planned kernels need head_dim a multiple of 8");
  if (!Aligned16(a.q) || !Aligned16(a.k_pool) || !Aligned16(a.v_pool) || !Aligned16(a.o)) {
    return BadArgs(kOp, "the planned kernels need 16-byte aligned q, pools and output");
  }
  const int64_t group = a.hq / a.hkv;
  if (p.heads_per_cta < 1 || p.heads_per_cta > attn::kMaxQueryVectors ||
      group % p.heads_per_cta != 0 || p.query_vectors > attn::kMaxQueryVectors ||
      (p.decode_items > 0 && p.query_vectors < p.heads_per_cta)) {
    return BadArgs(kOp, "plan heads_per_cta must divide hq / hkv, query_vectors at most 8");
  }
  if ((p.decode_items > 0 && !p.decode) || (p.prefill_items > 0 && !p.prefill) ||
      (p.merge_items > 0 && (!p.merges || !p.workspace)) || p.decode_items > 0x7fffffff ||
      p.prefill_items > 0x7fffffff || p.merge_items > 0x7fffffff || a.hq > 65535) {
    return BadArgs(kOp, "plan arrays missing or too large");
  }
  if (p.prefill_items > 0 && !PagedTensorCorePrefillSupported(a.hd)) {
    return BadArgs(kOp, "plan has prefill items but the tensor-core prefill needs head_dim 256 "
                        "on sm_80+");
  }
  return Status::Ok();
}

Status PlannedPagedAttention(const PagedAttentionArgs& a, cudaStream_t stream) {
  const PagedAttentionPlanView& p = *a.plan;
  if (p.decode_items > 0) {
    const dim3 grid(static_cast<unsigned>(p.decode_items),
                    static_cast<unsigned>(a.hq / p.heads_per_cta));
    const int64_t qv = p.query_vectors;
    if (qv <= 1) {
      PagedDecodeKernel<1><<<grid, kDecWarps * 32, 0, stream>>>(a, p);
    } else if (qv <= 2) {
      PagedDecodeKernel<2><<<grid, kDecWarps * 32, 0, stream>>>(a, p);
    } else if (qv <= 4) {
      PagedDecodeKernel<4><<<grid, kDecWarps * 32, 0, stream>>>(a, p);
    } else {
      PagedDecodeKernel<8><<<grid, kDecWarps * 32, 0, stream>>>(a, p);
    }
    CUDA_CHECK(cudaGetLastError());
  }
  if (p.prefill_items > 0) {
    constexpr int kSmem = static_cast<int>(sizeof(pf::Smem));
    static const cudaError_t attr = cudaFuncSetAttribute(
        PagedPrefill256Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    CUDA_CHECK(attr);
    const dim3 grid(static_cast<unsigned>(p.prefill_items), static_cast<unsigned>(a.hq));
    PagedPrefill256Kernel<<<grid, pf::kThreads, kSmem, stream>>>(a, p);
    CUDA_CHECK(cudaGetLastError());
  }
  if (p.merge_items > 0) {
    const dim3 grid(static_cast<unsigned>(p.merge_items), static_cast<unsigned>(a.hq));
    PagedMergeKernel<<<grid, 256, 0, stream>>>(a, p);
    CUDA_CHECK(cudaGetLastError());
  }
  return Status::Ok();
}

}  // namespace vlmserve::gpu
