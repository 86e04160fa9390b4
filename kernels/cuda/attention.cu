// The generic attention kernels (see attention.h): a warp per (query token, query head), online
// softmax in fp32; and the launchers' dispatch to the fast paths.
#include "kernels/cuda/attention.h"

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/attention_paged.h"
#include "kernels/cuda/attention_vision72.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch_util.h"
#include "kernels/kv_layout.h"

namespace vlmserve::gpu {
namespace {

constexpr int kWarps = 4;       // warps per block
constexpr int kMaxPerLane = 8;  // head_dim ≤ 256 = 32 lanes × 8

__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// The running softmax state of one query, its dimensions spread over the warp's lanes.
struct Online {
  float m = -INFINITY, l = 0.f, acc[kMaxPerLane] = {};
  __device__ __forceinline__ void Add(float s, const __nv_bfloat16* v, int lane, int hd) {
    const float m_new = fmaxf(m, s);
    const float corr = __expf(m - m_new), p = __expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) acc[i] = acc[i] * corr + p * __bfloat162float(v[d]);
    }
    m = m_new;
  }
};

__device__ __forceinline__ float Dot(const float* q, const __nv_bfloat16* k, int lane, int hd) {
  float part = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) part += q[i] * __bfloat162float(k[d]);
  }
  return WarpSum(part);
}

__global__ void PagedAttentionKernel(PagedAttentionArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5);
  if (warp >= a.tokens * a.hq) return;
  const int64_t t = warp / a.hq, h = warp % a.hq;
  const int hd = static_cast<int>(a.hd);
  // The row that owns token t (rows are few: a binary search over the prefix sums).
  int64_t lo = 0, hi = a.rows - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (a.row_tokens[mid] <= t) lo = mid; else hi = mid - 1;
  }
  const int64_t r = lo, first_token = a.row_tokens[r], last_token = a.row_tokens[r + 1];
  const int64_t start = a.row_start[r], qpos = start + (t - first_token);
  const int64_t row_end = start + (last_token - first_token);  // one past the row's last position
  const int32_t qb = a.token_blocks ? a.token_blocks[t] : -1;
  const int32_t* table = a.block_tables + r * a.table_stride;
  const int64_t kvh = h / (a.hq / a.hkv);

  float q[kMaxPerLane];
  const __nv_bfloat16* qrow = a.q + (t * a.hq + h) * a.hd;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    q[i] = d < hd ? __bfloat162float(qrow[d]) * a.scale : 0.f;
  }
  Online st;
  const int64_t k_first = a.sliding ? kv::FirstSlidingKey(qpos, a.window) : 0;
  for (int64_t k = k_first; k < row_end; ++k) {
    const int32_t kb =
        a.token_blocks && k >= start ? a.token_blocks[first_token + (k - start)] : -1;
    if (!kv::AttendAllowed(qpos, k, qb, kb, a.sliding, a.window)) continue;
    const int64_t off = kv::PoolOffset(table[kv::LogicalPage(k)], kv::SlotInPage(k), kvh, 0,
                                       a.hkv, a.hd);
    st.Add(Dot(q, a.k_pool + off, lane, hd), a.v_pool + off, lane, hd);
  }
  __nv_bfloat16* out = a.o + (t * a.hq + h) * a.hd;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) out[d] = __float2bfloat16_rn(st.l > 0.f ? st.acc[i] / st.l : 0.f);
  }
}

__global__ void DenseAttentionKernel(DenseAttentionArgs a, int64_t stride) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5);
  if (warp >= a.images * a.n * a.heads) return;
  const int64_t h = warp % a.heads, token = warp / a.heads, img = token / a.n;
  const int hd = static_cast<int>(a.hd);
  float q[kMaxPerLane];
  const __nv_bfloat16* qrow = a.q + token * stride + h * a.hd;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    q[i] = d < hd ? __bfloat162float(qrow[d]) * a.scale : 0.f;
  }
  Online st;
  for (int64_t j = img * a.n; j < (img + 1) * a.n; ++j) {
    st.Add(Dot(q, a.k + j * stride + h * a.hd, lane, hd), a.v + j * stride + h * a.hd, lane, hd);
  }
  __nv_bfloat16* out = a.o + (token * a.heads + h) * a.hd;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) out[d] = __float2bfloat16_rn(st.acc[i] / st.l);
  }
}

// VLMSERVE_ATTENTION=generic: every launch takes the generic kernels (to bisect a suspected fast
// kernel on a GPU without rebuilding).
bool ForceGeneric() {
  static const bool force = [] {
    const char* e = std::getenv("VLMSERVE_ATTENTION");
    return e != nullptr && std::strcmp(e, "generic") == 0;
  }();
  return force;
}

Status CheckHeadDim(const char* op, int64_t hd) {
  if (hd <= 0 || hd > 32 * kMaxPerLane || hd % 2 != 0) {
    return BadArgs(op, "head_dim must be even and at most 256, got " + std::to_string(hd));
  }
  return Status::Ok();
}

}  // namespace

Status PagedAttention(const PagedAttentionArgs& a, cudaStream_t stream) {
  constexpr const char* kOp = "PagedAttention";
  if (!a.q || !a.k_pool || !a.v_pool || !a.o || !a.row_tokens || !a.row_start ||
      !a.block_tables) {
    return BadArgs(kOp, "null pointer");
  }
  if (a.rows < 0 || a.tokens < 0 || a.hq <= 0 || a.hkv <= 0 || a.hq % a.hkv != 0) {
    return BadArgs(kOp, "rows/tokens must be ≥ 0 and hq a positive multiple of hkv");
  }
  RETURN_IF_ERROR(CheckHeadDim(kOp, a.hd));
  if (a.sliding && a.window <= 0) return BadArgs(kOp, "a sliding layer needs window > 0");
  if (a.table_stride <= 0) return BadArgs(kOp, "table_stride must be positive");
  if (a.rows == 0 || a.tokens == 0) return Status::Ok();
  if (a.plan != nullptr && a.hd % 8 == 0 && !ForceGeneric()) {
    RETURN_IF_ERROR(CheckPlannedPagedAttention(a));
    return PlannedPagedAttention(a, stream);
  }
  const int64_t warps = a.tokens * a.hq;
  PagedAttentionKernel<<<static_cast<unsigned>((warps + kWarps - 1) / kWarps), kWarps * 32, 0,
                         stream>>>(a);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

Status DenseAttention(const DenseAttentionArgs& a, cudaStream_t stream) {
  constexpr const char* kOp = "DenseAttention";
  if (!a.q || !a.k || !a.v || !a.o) return BadArgs(kOp, "null pointer");
  if (a.images < 0 || a.n <= 0 || a.heads <= 0) return BadArgs(kOp, "sizes must be positive");
  RETURN_IF_ERROR(CheckHeadDim(kOp, a.hd));
  const int64_t stride = a.token_stride ? a.token_stride : a.heads * a.hd;
  if (stride < a.heads * a.hd) return BadArgs(kOp, "token_stride below heads · head_dim");
  if (a.images == 0) return Status::Ok();
  if (a.path != AttentionPath::kGeneric) {
    const bool fast = VisionAttention72Supported(a, stride);
    if (a.path == AttentionPath::kFast && !fast) {
      return BadArgs(kOp, "the fast path needs head_dim 72, 16-byte aligned rows and sm_80+");
    }
    if (fast && (a.path == AttentionPath::kFast || !ForceGeneric())) {
      return VisionAttention72(a, stride, stream);
    }
  }
  const int64_t warps = a.images * a.n * a.heads;
  DenseAttentionKernel<<<static_cast<unsigned>((warps + kWarps - 1) / kWarps), kWarps * 32, 0,
                         stream>>>(a, stride);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
