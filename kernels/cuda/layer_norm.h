// LayerNorm on the device (SigLIP's layer_norm1/2 and post_layernorm, spec §4), bf16 in and out:
//   y = bf16( (x − mean) · rsqrt(var + eps) · w + b )   mean and biased variance in fp32,
// as PyTorch computes a bf16 layer_norm (fp32 inside, one rounding). Reference:
// kernels/cpu/layer_norm.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct LayerNormArgs {
  const __nv_bfloat16* x = nullptr;  // [rows, dim]
  const __nv_bfloat16* w = nullptr;  // [dim]
  const __nv_bfloat16* b = nullptr;  // [dim] or null
  __nv_bfloat16* y = nullptr;        // [rows, dim]; may equal x
  int64_t rows = 0, dim = 0;
  float eps = 1e-6f;
};
Status LayerNorm(const LayerNormArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
