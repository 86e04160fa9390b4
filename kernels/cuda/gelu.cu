// Gelu kernel (see gelu.h): grid-stride, one element per thread step.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/gelu.h"
#include "kernels/cuda/launch_util.h"

namespace vlmserve::gpu {
namespace {

// PyTorch's GeluCUDAKernelImpl, approximate="tanh", in fp32 (as geglu.cu).
__device__ __forceinline__ float GeluTanhF(float x) {
  constexpr float kBeta = 0.7978845608028654f;  // √(2/π)
  constexpr float kKappa = 0.044715f;
  const float x_cube = x * x * x;
  const float inner = kBeta * (x + kKappa * x_cube);
  return 0.5f * x * (1.f + tanhf(inner));
}

__global__ void GeluKernel(GeluArgs a) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < a.n;
       i += int64_t{gridDim.x} * blockDim.x) {
    a.y[i] = __float2bfloat16_rn(GeluTanhF(__bfloat162float(a.x[i])));
  }
}

}  // namespace

Status Gelu(const GeluArgs& a, cudaStream_t stream) {
  if (!a.x || !a.y) return BadArgs("Gelu", "null pointer");
  if (a.n < 0) return BadArgs("Gelu", "n must not be negative");
  if (a.n == 0) return Status::Ok();
  constexpr int kThreads = 256;
  GeluKernel<<<ElementBlocks(a.n, kThreads), kThreads, 0, stream>>>(a);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
