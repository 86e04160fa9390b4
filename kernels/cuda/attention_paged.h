// PagedAttention's planned fast path, internal to kernels/cuda: attention.cu dispatches to it when
// the arguments carry a plan (attention_paged.cu explains the kernels).
#pragma once

#include <cuda_runtime.h>

#include "common/status.h"
#include "kernels/cuda/attention.h"

namespace vlmserve::gpu {

// Whether the planned kernels can run these arguments: a plan, head_dim a multiple of 8, 16-byte
// aligned q, pools and output, and (when the plan has prefill items) head_dim 256 on sm_80+.
Status CheckPlannedPagedAttention(const PagedAttentionArgs& a);

// Runs the plan: the decode items, the prefill items, then the merges (arguments already checked).
Status PlannedPagedAttention(const PagedAttentionArgs& a, cudaStream_t stream);

}  // namespace vlmserve::gpu
