// RoPE kernel (see rope.h): one thread per rotated pair (token, head, i < half). Neighbouring
// threads take neighbouring i, so loads and stores of both halves are coalesced. sincosf is the
// accurate version (full range reduction): θ reaches 131072 rad for local layers at long contexts.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/rope.h"
#include "kernels/index_math.h"

namespace vlmserve::gpu {
namespace {

__global__ void RopeKernel(RopeArgs a) {
  const int64_t half = a.head_dim / 2, total = a.tokens * a.heads * half;
  for (int64_t g = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; g < total;
       g += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = g % half, r = g / half;
    __nv_bfloat16* row = a.x + idx::HeadRowOffset(r, a.heads, a.head_dim, a.token_stride);
    const float theta = static_cast<float>(a.positions[r / a.heads]) * a.inv_freq[i];
    float s, c;
    sincosf(theta, &s, &c);
    const int64_t j = idx::RopePartner(i, a.head_dim);
    const float x0 = __bfloat162float(row[i]), x1 = __bfloat162float(row[j]);
    row[i] = __float2bfloat16_rn(x0 * c - x1 * s);
    row[j] = __float2bfloat16_rn(x1 * c + x0 * s);
  }
}

}  // namespace

Status Rope(const RopeArgs& args, cudaStream_t stream) {
  RopeArgs a = args;
  if (a.token_stride == 0) a.token_stride = a.heads * a.head_dim;
  if (!a.x || !a.positions || !a.inv_freq) return BadArgs("Rope", "null pointer");
  if (a.tokens < 0 || a.heads <= 0 || a.head_dim <= 0 || a.head_dim % 2 != 0)
    return BadArgs("Rope", "sizes must be positive and head_dim even");
  if (a.token_stride < a.heads * a.head_dim) return BadArgs("Rope", "token stride smaller than heads × head_dim");
  const int64_t total = a.tokens * a.heads * (a.head_dim / 2);
  if (total == 0) return Status::Ok();
  constexpr int kThreads = 256;
  RopeKernel<<<ElementBlocks(total, kThreads), kThreads, 0, stream>>>(a);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
