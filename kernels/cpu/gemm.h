// GemmRef: the fp32 reference for every GEMM in the model (spec §0.1: y = x · Wᵀ (+ b) for
// nn.Linear; the projector's raw parameter is input-major, y = x · W, spec §5). Plain loops with
// fp32 accumulation in k order, parallelised over blocks of rows (ParallelFor) for the larger shapes, so
// a row's result never depends on how many other rows there are. The oracle for kernels/cuda/gemm.
#pragma once

#include <cstdint>
#include <vector>

namespace vlmserve {

struct GemmRefArgs {
  const float* x = nullptr;  // [m, k] row-major activations
  const float* w =
      nullptr;         // [n, k] row-major weight (nn.Linear: out × in); [k, n] if w_input_major
  float* y = nullptr;  // [m, n] row-major output, y = x · wᵀ (+ bias)
  int64_t m = 0, n = 0, k = 0;
  const float* bias = nullptr;  // [n] or null
  bool w_input_major = false;  // w is [k, n] and y = x · w (spec §5's mm_input_projection_weight)
};

void GemmRef(const GemmRefArgs& args);

// nn.Linear on widened weights: y[m, n] = x[m, k] · wᵀ (+ b when b is not empty).
void LinearRef(const float* x, const std::vector<float>& w, const std::vector<float>& b, float* y,
               int64_t m, int64_t n, int64_t k);

}  // namespace vlmserve
