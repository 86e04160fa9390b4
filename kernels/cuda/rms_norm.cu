// Gemma RMSNorm kernels (see rms_norm.h). Rows are read in 16-byte chunks of 8 bf16 when every row
// start and the weight are 16-byte aligned and dim % 8 == 0. Such rows up to 8192 elements stay in
// registers between the reduction and the output (RmsNormRegKernel: a warp per row for short rows
// such as 256-element heads, else a block per row); the sum of squares is fp32. Longer or unaligned
// rows use the streaming kernel, which re-reads the row (from L1/L2) for the second pass.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/index_math.h"

namespace vlmserve::gpu {
namespace {

// C chunks of 8 per thread; kWarpPerRow: blockDim.x / 32 rows per block, reduced by shuffles only.
template <int C, bool kWarpPerRow>
__global__ void RmsNormRegKernel(RmsNormArgs a, int64_t rows) {
  __shared__ float scratch[32];
  const int lane = kWarpPerRow ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int group = kWarpPerRow ? 32 : static_cast<int>(blockDim.x);
  const int64_t r = kWarpPerRow ? int64_t{blockIdx.x} * (blockDim.x / 32) + (threadIdx.x >> 5)
                                : int64_t{blockIdx.x};
  if (kWarpPerRow && r >= rows) return;  // whole warps leave; no block-wide sync in this mode
  const __nv_bfloat16* x = a.x + idx::HeadRowOffset(r, a.heads, a.dim, a.x_stride);
  __nv_bfloat16* y = a.y + idx::HeadRowOffset(r, a.heads, a.dim, a.y_stride);
  float v[C][8];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < C; ++k) {
    const int64_t c = (int64_t{lane} + int64_t{k} * group) * 8;
    if (c < a.dim) {
      LoadBf16<8>(x + c, v[k]);
#pragma unroll
      for (int i = 0; i < 8; ++i) ss += v[k][i] * v[k][i];
    }
  }
  ss = kWarpPerRow ? WarpSum(ss) : BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(a.dim) + a.eps);
#pragma unroll
  for (int k = 0; k < C; ++k) {
    const int64_t c = (int64_t{lane} + int64_t{k} * group) * 8;
    if (c < a.dim) {
      float w[8];
      LoadBf16<8>(a.w + c, w);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[k][i] = (v[k][i] * inv) * (1.f + w[i]);
      StoreBf16<8>(y + c, v[k]);
    }
  }
}

template <int V>
__global__ void RmsNormKernel(RmsNormArgs a) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const __nv_bfloat16* x = a.x + idx::HeadRowOffset(r, a.heads, a.dim, a.x_stride);
  __nv_bfloat16* y = a.y + idx::HeadRowOffset(r, a.heads, a.dim, a.y_stride);
  float ss = 0.f;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V];
    LoadBf16<V>(x + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) ss += v[i] * v[i];
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(a.dim) + a.eps);
  // In place is safe: a thread rewrites only the chunks it read, after the reduction.
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V], w[V];
    LoadBf16<V>(x + c, v);
    LoadBf16<V>(a.w + c, w);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = (v[i] * inv) * (1.f + w[i]);
    StoreBf16<V>(y + c, v);
  }
}

template <int V>
__global__ void AddRmsNormKernel(AddRmsNormArgs a) {
  __shared__ float scratch[32];
  const int64_t off = int64_t{blockIdx.x} * a.dim;
  const __nv_bfloat16* in = a.a + off;
  __nv_bfloat16* res = a.residual + off;
  float ss = 0.f;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V];
    LoadBf16<V>(in + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) ss += v[i] * v[i];
  }
  const float inv = rsqrtf(BlockSum(ss, scratch) / static_cast<float>(a.dim) + a.eps);
  float ss_next = 0.f;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V], w[V], r[V];
    LoadBf16<V>(in + c, v);
    LoadBf16<V>(a.w_post + c, w);
    LoadBf16<V>(res + c, r);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      // transformers: the norm returns bf16, then the residual add rounds again (spec §6.6).
      r[i] = RoundBf16(r[i] + RoundBf16((v[i] * inv) * (1.f + w[i])));
      ss_next += r[i] * r[i];
    }
    StoreBf16<V>(res + c, r);
  }
  if (a.w_next == nullptr) return;  // uniform over the block
  const float inv_next = rsqrtf(BlockSum(ss_next, scratch) / static_cast<float>(a.dim) + a.eps);
  __nv_bfloat16* y = a.y_next + off;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float r[V], w[V];
    LoadBf16<V>(res + c, r);  // this thread's own writes above
    LoadBf16<V>(a.w_next + c, w);
#pragma unroll
    for (int i = 0; i < V; ++i) r[i] = (r[i] * inv_next) * (1.f + w[i]);
    StoreBf16<V>(y + c, r);
  }
}

}  // namespace

Status RmsNorm(const RmsNormArgs& args, cudaStream_t stream) {
  RmsNormArgs a = args;
  if (a.x_stride == 0) a.x_stride = a.heads * a.dim;
  if (a.y_stride == 0) a.y_stride = a.heads * a.dim;
  if (!a.x || !a.y || !a.w) return BadArgs("RmsNorm", "null pointer");
  if (a.dim <= 0 || a.heads <= 0 || a.tokens < 0)
    return BadArgs("RmsNorm", "sizes must be positive");
  if (a.x_stride < a.heads * a.dim || a.y_stride < a.heads * a.dim)
    return BadArgs("RmsNorm", "row stride smaller than heads × dim");
  const int64_t rows = a.tokens * a.heads;
  if (rows > kMaxGridRows) return BadArgs("RmsNorm", "too many rows");
  if (rows == 0) return Status::Ok();
  const bool vec = a.dim % 8 == 0 && a.x_stride % 8 == 0 && a.y_stride % 8 == 0 && Aligned16(a.x) &&
                   Aligned16(a.y) && Aligned16(a.w);
  const RowPlan plan = vec ? PlanRegisterRow(rows, a.dim / 8) : RowPlan{};
  if (plan.chunks_per_thread > 0) {
    DispatchRowPlan(plan, [&](auto chunks, auto warp_per_row) {
      RmsNormRegKernel<decltype(chunks)::value, decltype(warp_per_row)::value>
          <<<static_cast<unsigned>(plan.blocks), plan.threads, 0, stream>>>(a, rows);
    });
  } else if (vec) {
    RmsNormKernel<8><<<static_cast<unsigned>(rows), RowThreads(a.dim / 8), 0, stream>>>(a);
  } else {
    RmsNormKernel<1><<<static_cast<unsigned>(rows), RowThreads(a.dim), 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

Status AddRmsNorm(const AddRmsNormArgs& a, cudaStream_t stream) {
  if (!a.a || !a.w_post || !a.residual) return BadArgs("AddRmsNorm", "null pointer");
  if ((a.w_next == nullptr) != (a.y_next == nullptr))
    return BadArgs("AddRmsNorm", "w_next and y_next go together");
  if (a.dim <= 0 || a.rows < 0) return BadArgs("AddRmsNorm", "sizes must be positive");
  if (a.rows > kMaxGridRows) return BadArgs("AddRmsNorm", "too many rows");
  if (a.rows == 0) return Status::Ok();
  const bool vec = a.dim % 8 == 0 && Aligned16(a.a) && Aligned16(a.w_post) &&
                   Aligned16(a.residual) &&
                   (!a.w_next || (Aligned16(a.w_next) && Aligned16(a.y_next)));
  if (vec) {
    AddRmsNormKernel<8><<<static_cast<unsigned>(a.rows), RowThreads(a.dim / 8), 0, stream>>>(a);
  } else {
    AddRmsNormKernel<1><<<static_cast<unsigned>(a.rows), RowThreads(a.dim), 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
