// Patch-grid average pooling reference (see avg_pool.h).
#include "kernels/cpu/avg_pool.h"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace vlmserve {

void AvgPoolPatchesRef(const AvgPoolPatchesArgs& a) {
  const int64_t out_side = a.side / a.kernel;
  std::vector<double> acc(static_cast<size_t>(a.d));
  for (int64_t img = 0; img < a.n; ++img) {
    const float* x = a.x + img * a.side * a.side * a.d;
    float* y = a.y + img * out_side * out_side * a.d;
    for (int64_t i = 0; i < out_side; ++i) {
      for (int64_t j = 0; j < out_side; ++j) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t r = a.kernel * i; r < a.kernel * (i + 1); ++r) {
          for (int64_t c = a.kernel * j; c < a.kernel * (j + 1); ++c) {
            const float* px = x + (r * a.side + c) * a.d;
            for (int64_t k = 0; k < a.d; ++k) acc[k] += px[k];
          }
        }
        float* out = y + (i * out_side + j) * a.d;
        const double inv = 1.0 / static_cast<double>(a.kernel * a.kernel);
        for (int64_t k = 0; k < a.d; ++k) out[k] = static_cast<float>(acc[k] * inv);
      }
    }
  }
}

}  // namespace vlmserve
