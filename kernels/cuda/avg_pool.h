// Patch-grid average pooling on the device (the projector, spec §5), bf16 in and out:
// y[img, t, c] = bf16( Σ over the kernel × kernel window of x[img, patch, c] (fp32) / kernel² ),
// as PyTorch's avg_pool2d computes bf16 (fp32 sum, one division, one rounding). kernel comes from
// the config (patches_per_side / √mm_tokens_per_image), never assumed. Window indices:
// idx::PoolInputPatch. Reference: kernels/cpu/avg_pool (AvgPoolPatchesRef).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct AvgPoolPatchesArgs {
  const __nv_bfloat16* x = nullptr;  // [n, side · side, d]
  __nv_bfloat16* y = nullptr;        // [n, (side / kernel)², d]
  int64_t n = 0, side = 0, kernel = 0, d = 0;
};
Status AvgPoolPatches(const AvgPoolPatchesArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
