// LayerNorm kernel (see layer_norm.h). One block per row, V-element chunks as in rms_norm.cu.
// Two-pass statistics (mean, then the mean of (x − mean)²) rather than E[x²] − mean², which loses
// precision when |mean| ≫ std; the row is re-read from L1/L2 for each pass.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/layer_norm.h"

namespace vlmserve::gpu {
namespace {

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
  if (vec) {
    LayerNormKernel<8><<<static_cast<unsigned>(a.rows), RowThreads(a.dim / 8), 0, stream>>>(a);
  } else {
    LayerNormKernel<1><<<static_cast<unsigned>(a.rows), RowThreads(a.dim), 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
