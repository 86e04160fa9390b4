// LayerNorm reference (see layer_norm.h).
#include "kernels/cpu/layer_norm.h"

#include <cmath>

namespace vlmserve {

void LayerNormRef(const LayerNormArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* x = a.x + r * a.dim;
    float* y = a.y + r * a.dim;
    double mean = 0;
    for (int64_t i = 0; i < a.dim; ++i) mean += x[i];
    mean /= static_cast<double>(a.dim);
    double var = 0;
    for (int64_t i = 0; i < a.dim; ++i) var += (x[i] - mean) * (x[i] - mean);
    var /= static_cast<double>(a.dim);
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(a.eps));  // eps inside the root
    for (int64_t i = 0; i < a.dim; ++i) {
      const double v = (x[i] - mean) * inv * a.w[i] + (a.b ? a.b[i] : 0.0f);
      y[i] = static_cast<float>(v);
    }
  }
}

}  // namespace vlmserve
