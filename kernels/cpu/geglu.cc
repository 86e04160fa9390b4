// GeGLU reference (see geglu.h).
#include "kernels/cpu/geglu.h"

#include <algorithm>

#include "kernels/cpu/gelu.h"
#include "kernels/cpu/parallel.h"

namespace vlmserve {

void GegluRef(const float* gate, const float* up, float* y, int64_t n) {
  // Elementwise, so any split is exact; a double tanh costs about as much as
  // 300 of the GEMM's (vectorised) multiply-adds.
  constexpr int64_t kBlock = 1024;
  ParallelFor((n + kBlock - 1) / kBlock, kBlock * 300, [=](int64_t b, int64_t e) {
    for (int64_t i = b * kBlock; i < std::min(n, e * kBlock); ++i) y[i] = GeluTanh(gate[i]) * up[i];
  });
}

}  // namespace vlmserve
