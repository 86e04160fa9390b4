// Rotary position embedding on the device, rotate-half layout (spec §6.4), in place on bf16 q or k:
//   θ = float32(position) · inv_freq[i];  cos/sin in fp32
//   x[i] ← bf16(x[i]·cos − x[i+half]·sin),  x[i+half] ← bf16(x[i+half]·cos + x[i]·sin)
// inv_freq is per layer type (RopeInvFreq in kernels/cpu/rope.h: base and linear factor), uploaded
// once. Numerical choice: transformers rounds cos/sin to bf16 and rounds each product and the sum
// to bf16; here everything stays fp32 and rounds once — closer to the exact value (the GPU tests
// check ≤ 2× the error of transformers' bf16 flow). Reference: kernels/cpu/rope (RopeRef).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct RopeArgs {
  __nv_bfloat16* x =
      nullptr;  // rows at idx::HeadRowOffset(t·heads + h, heads, head_dim, token_stride)
  const int32_t* positions = nullptr;  // [tokens], ≥ 0 (device)
  const float* inv_freq = nullptr;     // [head_dim / 2] (device)
  int64_t tokens = 0, heads = 0, head_dim = 0;
  int64_t token_stride = 0;  // elements between tokens; 0 = heads · head_dim
};
Status Rope(const RopeArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
