// LayerNorm kernels (see layer_norm.h). Two-pass statistics (mean, then the mean of (x − mean)²)
// rather than E[x²] − mean², which loses precision when |mean| ≫ std. Aligned rows of up to 8192
// elements (SigLIP: 1152) stay in registers across both passes (LayerNormRegKernel, as
// RmsNormRegKernel in rms_norm.cu); others use the streaming kernel, which re-reads the row.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/layer_norm.h"

namespace vlmserve::gpu {
namespace {

template <int C, bool kWarpPerRow>
__global__ void LayerNormRegKernel(LayerNormArgs a) {
  __shared__ float scratch[32];
  const int lane = kWarpPerRow ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int group = kWarpPerRow ? 32 : static_cast<int>(blockDim.x);
  const int64_t r = kWarpPerRow ? int64_t{blockIdx.x} * (blockDim.x / 32) + (threadIdx.x >> 5)
                                : int64_t{blockIdx.x};
  if (kWarpPerRow && r >= a.rows) return;
  const __nv_bfloat16* x = a.x + r * a.dim;
  const float n = static_cast<float>(a.dim);
  float v[C][8];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < C; ++k) {
    const int64_t c = (int64_t{lane} + int64_t{k} * group) * 8;
    if (c < a.dim) {
      LoadBf16<8>(x + c, v[k]);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[k][i];
    }
  }
  const float mean = (kWarpPerRow ? WarpSum(sum) : BlockSum(sum, scratch)) / n;
  float sq = 0.f;
#pragma unroll
  for (int k = 0; k < C; ++k) {
    const int64_t c = (int64_t{lane} + int64_t{k} * group) * 8;
    if (c < a.dim) {
#pragma unroll
      for (int i = 0; i < 8; ++i) sq += (v[k][i] - mean) * (v[k][i] - mean);
    }
  }
  const float rstd = rsqrtf((kWarpPerRow ? WarpSum(sq) : BlockSum(sq, scratch)) / n + a.eps);
  __nv_bfloat16* y = a.y + r * a.dim;
#pragma unroll
  for (int k = 0; k < C; ++k) {
    const int64_t c = (int64_t{lane} + int64_t{k} * group) * 8;
    if (c < a.dim) {
      float w[8], b[8];
      LoadBf16<8>(a.w + c, w);
      if (a.b) {
        LoadBf16<8>(a.b + c, b);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) b[i] = 0.f;
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) v[k][i] = (v[k][i] - mean) * rstd * w[i] + b[i];
      StoreBf16<8>(y + c, v[k]);
    }
  }
}

template <int V>
__global__ void LayerNormKernel(LayerNormArgs a) {
  __shared__ float scratch[32];
  const int64_t off = int64_t{blockIdx.x} * a.dim;
  const __nv_bfloat16* x = a.x + off;
  const float n = static_cast<float>(a.dim);
  float sum = 0.f;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V];
    LoadBf16<V>(x + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) sum += v[i];
  }
  const float mean = BlockSum(sum, scratch) / n;
  float sq = 0.f;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V];
    LoadBf16<V>(x + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) sq += (v[i] - mean) * (v[i] - mean);
  }
  const float rstd = rsqrtf(BlockSum(sq, scratch) / n + a.eps);
  __nv_bfloat16* y = a.y + off;
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.dim; c += int64_t{blockDim.x} * V) {
    float v[V], w[V], b[V];
    LoadBf16<V>(x + c, v);
    LoadBf16<V>(a.w + c, w);
    if (a.b) {
      LoadBf16<V>(a.b + c, b);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) b[i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = (v[i] - mean) * rstd * w[i] + b[i];
    StoreBf16<V>(y + c, v);
  }
}

}  // namespace

Status LayerNorm(const LayerNormArgs& a, cudaStream_t stream) {
  if (!a.x || !a.w || !a.y) return BadArgs("LayerNorm", "null pointer");
  if (a.dim <= 0 || a.rows < 0) return BadArgs("LayerNorm", "sizes must be positive");
  if (a.rows > kMaxGridRows) return BadArgs("LayerNorm", "too many rows");
  if (a.rows == 0) return Status::Ok();
  const bool vec = a.dim % 8 == 0 && Aligned16(a.x) && Aligned16(a.w) && Aligned16(a.y) &&
                   (!a.b || Aligned16(a.b));
  const RowPlan plan = vec ? PlanRegisterRow(a.rows, a.dim / 8) : RowPlan{};
  if (plan.chunks_per_thread > 0) {
    DispatchRowPlan(plan, [&](auto chunks, auto warp_per_row) {
      LayerNormRegKernel<decltype(chunks)::value, decltype(warp_per_row)::value>
          <<<static_cast<unsigned>(plan.blocks), plan.threads, 0, stream>>>(a);
    });
  } else if (vec) {
    LayerNormKernel<8><<<static_cast<unsigned>(a.rows), RowThreads(a.dim / 8), 0, stream>>>(a);
  } else {
    LayerNormKernel<1><<<static_cast<unsigned>(a.rows), RowThreads(a.dim), 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
