// Gelu: y = gelu_tanh(x) elementwise on bf16 (SigLIP's MLP activation, spec §4), computed in fp32
// as PyTorch's GeluCUDAKernelImpl(approximate="tanh") and rounded to bf16 once. Reference:
// kernels/cpu/gelu (GeluTanhRef). NOT YET RUN ON A GPU (written in a CPU session).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct GeluArgs {
  const __nv_bfloat16* x = nullptr;  // [n]
  __nv_bfloat16* y = nullptr;        // [n]; may equal x
  int64_t n = 0;
};
Status Gelu(const GeluArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
