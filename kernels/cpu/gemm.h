// GemmRef: the fp32 reference for every GEMM in the model (spec §0.1: y = x · Wᵀ for nn.Linear).
// Plain triple loop with fp32 accumulation, parallelised over rows with std::thread for the larger
// shapes; the oracle for kernels/cuda/gemm.
#pragma once

#include <cstdint>

namespace vlmserve {

struct GemmRefArgs {
  const float* x = nullptr;  // [m, k] row-major activations
  const float* w = nullptr;  // [n, k] row-major weight (nn.Linear layout: out_features × in_features)
  float* y = nullptr;        // [m, n] row-major output, y = x · wᵀ
  int64_t m = 0, n = 0, k = 0;
};

void GemmRef(const GemmRefArgs& args);

}  // namespace vlmserve
