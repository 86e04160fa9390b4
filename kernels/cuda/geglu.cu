// GeGLU kernel (see geglu.h): grid-stride over V-element chunks of the output (V = 8 with 16-byte
// access when inter % 8 == 0 and the buffers are aligned).
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/geglu.h"
#include "kernels/cuda/launch_util.h"

namespace vlmserve::gpu {
namespace {

// PyTorch's GeluCUDAKernelImpl, approximate="tanh", in fp32.
__device__ __forceinline__ float GeluTanh(float x) {
  constexpr float kBeta = 0.7978845608028654f;  // √2 · (2/√π) · 0.5 = √(2/π)
  constexpr float kKappa = 0.044715f;
  const float x_cube = x * x * x;  // PyTorch's order of operations
  const float inner = kBeta * (x + kKappa * x_cube);
  return 0.5f * x * (1.f + tanhf(inner));
}

template <int V>
__global__ void GegluKernel(GegluArgs a) {
  const int64_t chunks_per_row = a.inter / V, total = a.rows * chunks_per_row;
  for (int64_t g = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; g < total;
       g += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = g / chunks_per_row, c = (g % chunks_per_row) * V;
    const __nv_bfloat16* gate = a.gate_up + r * 2 * a.inter + c;
    float gv[V], uv[V];
    LoadBf16<V>(gate, gv);
    LoadBf16<V>(gate + a.inter, uv);
#pragma unroll
    for (int i = 0; i < V; ++i) gv[i] = RoundBf16(GeluTanh(gv[i])) * uv[i];
    StoreBf16<V>(a.y + r * a.inter + c, gv);
  }
}

}  // namespace

Status Geglu(const GegluArgs& a, cudaStream_t stream) {
  if (!a.gate_up || !a.y) return BadArgs("Geglu", "null pointer");
  if (a.rows < 0 || a.inter <= 0) return BadArgs("Geglu", "sizes must be positive");
  if (a.rows == 0) return Status::Ok();
  constexpr int kThreads = 256;
  if (a.inter % 8 == 0 && Aligned16(a.gate_up) && Aligned16(a.y)) {
    GegluKernel<8><<<ElementBlocks(a.rows * a.inter / 8, kThreads), kThreads, 0, stream>>>(a);
  } else {
    GegluKernel<1><<<ElementBlocks(a.rows * a.inter, kThreads), kThreads, 0, stream>>>(a);
  }
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve::gpu
