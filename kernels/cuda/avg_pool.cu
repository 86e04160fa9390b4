// Average pooling kernel (see avg_pool.h): one thread per output element; consecutive threads take
// consecutive channels, so every window read is coalesced across the warp.
#include "kernels/cuda/avg_pool.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch_util.h"
#include "kernels/index_math.h"

namespace vlmserve::gpu {
namespace {

__global__ void AvgPoolPatchesKernel(AvgPoolPatchesArgs a) {
  const int64_t out_side = a.side / a.kernel, out_tokens = out_side * out_side;
  const int64_t window = a.kernel * a.kernel, total = a.n * out_tokens * a.d;
  const float divisor = static_cast<float>(window);
  for (int64_t g = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; g < total;
       g += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = g % a.d, t = (g / a.d) % out_tokens, img = g / (a.d * out_tokens);
    const __nv_bfloat16* x = a.x + img * a.side * a.side * a.d + c;
    float acc = 0.f;
    for (int64_t w = 0; w < window; ++w) acc += __bfloat162float(x[idx::PoolInputPatch(t, w, a.side, a.kernel) * a.d]);
    a.y[g] = __float2bfloat16_rn(acc / divisor);
  }
}

}  // namespace

Status AvgPoolPatches(const AvgPoolPatchesArgs& a, cudaStream_t stream) {
  if (!a.x || !a.y) return BadArgs("AvgPoolPatches", "null pointer");
  if (a.n < 0 || a.side <= 0 || a.kernel <= 0 || a.d <= 0) return BadArgs("AvgPoolPatches", "sizes must be positive");
  if (a.side % a.kernel != 0) return BadArgs("AvgPoolPatches", "kernel must divide the grid side");
  const int64_t total = a.n * (a.side / a.kernel) * (a.side / a.kernel) * a.d;
  if (total == 0) return Status::Ok();
  constexpr int kThreads = 256;
  AvgPoolPatchesKernel<<<ElementBlocks(total, kThreads), kThreads, 0, stream>>>(a);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
