// DenseAttention's tensor-core path for head_dim 72 (the SigLIP tower of Gemma 3), internal to
// kernels/cuda: attention.cu dispatches to it (attention_vision72.cu explains the kernel).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/attention.h"

namespace vlmserve::gpu {

// Whether the fast path can run these arguments: head_dim 72, `stride` (elements between tokens)
// a multiple of 8, q/k/v 16-byte aligned and o 4-byte aligned, the grid within limits, and the
// current device sm_80 or newer (mma.sync bf16, ldmatrix, cp.async).
bool VisionAttention72Supported(const DenseAttentionArgs& a, int64_t stride);

// Launches it (arguments already checked by DenseAttention and VisionAttention72Supported).
Status VisionAttention72(const DenseAttentionArgs& a, int64_t stride, cudaStream_t stream);

}  // namespace vlmserve::gpu
