// Device-side helpers shared by the kernels: vector loads/stores of bf16 as fp32 and a block-wide
// sum. C++17 (nvcc under CMake 3.25 cannot take C++20).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace vlmserve::gpu {

// 8 bf16 values held in one 16-byte word, widened to fp32.
__device__ __forceinline__ void WidenBf16x8(const uint4& raw, float (&out)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// V consecutive bf16 values (V = 8: one 16-byte transaction; V = 1: scalar) widened to fp32.
template <int V>
__device__ __forceinline__ void LoadBf16(const __nv_bfloat16* p, float (&out)[V]) {
  if constexpr (V == 8) {
    WidenBf16x8(*reinterpret_cast<const uint4*>(p), out);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = __bfloat162float(p[i]);
  }
}

// Rounds V fp32 values to bf16 (nearest even) and stores them.
template <int V>
__device__ __forceinline__ void StoreBf16(__nv_bfloat16* p, const float (&v)[V]) {
  if constexpr (V == 8) {
    uint4 raw;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = __float2bfloat16_rn(v[i]);
  }
}

// fp32 → bf16 → fp32: the value a bf16 tensor holds (for emulating transformers' intermediate
// roundings, spec §6.6).
__device__ __forceinline__ float RoundBf16(float x) {
  return __bfloat162float(__float2bfloat16_rn(x));
}

// Sum over the warp; every lane gets the total.
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the total.
// `scratch` holds 32 floats of shared memory. Two __syncthreads so it can be called repeatedly.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = lane < warps ? scratch[lane] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// True when p is aligned for 16-byte vector access.
inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace vlmserve::gpu
