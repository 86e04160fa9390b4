// Average pooling kernel (see avg_pool.h): one block per output token; its threads split the
// channels into chunks of V (V = 8: 16-byte loads when d % 8 == 0 and the buffers are aligned) and
// walk the kernel × kernel window from idx::PoolWindowStart without any division per element.
#include "kernels/cuda/avg_pool.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/launch_util.h"
#include "kernels/index_math.h"

namespace vlmserve::gpu {
namespace {

template <int V>
__global__ void AvgPoolPatchesKernel(AvgPoolPatchesArgs a) {
  const int64_t out_side = a.side / a.kernel, out_tokens = out_side * out_side;
  const int64_t img = blockIdx.x / out_tokens, t = blockIdx.x % out_tokens;
  const __nv_bfloat16* x =
      a.x + (img * a.side * a.side + idx::PoolWindowStart(t, a.side, a.kernel)) * a.d;
  __nv_bfloat16* y = a.y + int64_t{blockIdx.x} * a.d;
  const float divisor = static_cast<float>(a.kernel * a.kernel);  // PyTorch divides once, in fp32
  for (int64_t c = int64_t{threadIdx.x} * V; c < a.d; c += int64_t{blockDim.x} * V) {
    float acc[V] = {};
    for (int64_t ky = 0; ky < a.kernel; ++ky) {
      for (int64_t kx = 0; kx < a.kernel; ++kx) {
        float v[V];
        LoadBf16<V>(x + (ky * a.side + kx) * a.d + c, v);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] += v[i];
      }
    }
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] /= divisor;
    StoreBf16<V>(y + c, acc);
  }
}

}  // namespace

Status AvgPoolPatches(const AvgPoolPatchesArgs& a, cudaStream_t stream) {
  if (!a.x || !a.y) return BadArgs("AvgPoolPatches", "null pointer");
  if (a.n < 0 || a.side <= 0 || a.kernel <= 0 || a.d <= 0)
    return BadArgs("AvgPoolPatches", "sizes must be positive");
  if (a.side % a.kernel != 0) return BadArgs("AvgPoolPatches", "kernel must divide the grid side");
  const int64_t outputs = a.n * (a.side / a.kernel) * (a.side / a.kernel);  // one block each
  if (outputs > kMaxGridRows) return BadArgs("AvgPoolPatches", "too many output tokens");
  if (outputs == 0) return Status::Ok();
  if (a.d % 8 == 0 && Aligned16(a.x) && Aligned16(a.y)) {
    AvgPoolPatchesKernel<8><<<static_cast<unsigned>(outputs), RowThreads(a.d / 8), 0, stream>>>(a);
  } else {
    AvgPoolPatchesKernel<1><<<static_cast<unsigned>(outputs), RowThreads(a.d), 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
