// Gemma RMSNorm on the device (spec §6.3), bf16 in and out, fp32 inside:
//   y = bf16( x · rsqrt(mean(x²) + eps) · (1 + w) )       (w stored zero-centred)
// Reference: kernels/cpu/rms_norm (RmsNormRef).
//
// RmsNorm normalises rows of `dim` elements. A row r is found with idx::HeadRowOffset, so the same
// launcher serves a plain [rows, dim] matrix (heads = 1) and the per-head q/k norm over the q or k
// part of a fused qkv buffer (heads = 8 or 4, dim = head_dim, x_stride = the fused row width).
//
// AddRmsNorm is the decoder's residual step fused with the next norm (spec §6.2):
//   residual = bf16( residual + bf16(RMSNorm_post(a)) )     (transformers' two bf16 roundings)
//   y_next   = bf16( RMSNorm_next(residual) )               (when w_next is given)
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct RmsNormArgs {
  const __nv_bfloat16* x = nullptr;  // rows at idx::HeadRowOffset(r, heads, dim, x_stride)
  __nv_bfloat16* y = nullptr;        // same layout with y_stride; may equal x
  const __nv_bfloat16* w = nullptr;  // [dim], zero-centred
  int64_t tokens = 0, heads = 1, dim = 0;
  int64_t x_stride = 0, y_stride = 0;  // elements between token rows; 0 = heads · dim
  float eps = 1e-6f;
};
Status RmsNorm(const RmsNormArgs& args, cudaStream_t stream);

struct AddRmsNormArgs {
  const __nv_bfloat16* a = nullptr;       // [rows, dim] the sublayer output
  const __nv_bfloat16* w_post = nullptr;  // [dim] its post-norm weight
  __nv_bfloat16* residual = nullptr;      // [rows, dim] the residual stream, updated in place
  const __nv_bfloat16* w_next = nullptr;  // [dim] the next pre-norm's weight, or null
  __nv_bfloat16* y_next = nullptr;        // [rows, dim] its output (needed when w_next is set)
  int64_t rows = 0, dim = 0;
  float eps = 1e-6f;
};
Status AddRmsNorm(const AddRmsNormArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
