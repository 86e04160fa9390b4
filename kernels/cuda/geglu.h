// GeGLU on the device (the Gemma MLP's gate, spec §6.2), on the fused gate|up GEMM output:
//   y = bf16( bf16(gelu_tanh(gate)) · up )
// gelu_tanh as PyTorch's CUDA kernel computes it (fp32, tanhf), rounded to bf16 as transformers'
// bf16 activation is, then the product rounded again — the same two roundings as transformers.
// Reference: kernels/cpu/geglu (GegluRef, fp32).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace vlmserve::gpu {

struct GegluArgs {
  const __nv_bfloat16* gate_up = nullptr;  // [rows, 2 · inter]: gate in columns 0…inter−1, up after
  __nv_bfloat16* y = nullptr;              // [rows, inter]
  int64_t rows = 0, inter = 0;
};
Status Geglu(const GegluArgs& args, cudaStream_t stream);

}  // namespace vlmserve::gpu
