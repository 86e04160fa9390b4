// Gemma RMSNorm reference (see rms_norm.h). The mean of squares is accumulated in double.
#include "kernels/cpu/rms_norm.h"

#include <cmath>

namespace vlmserve {

void RmsNormRef(const RmsNormArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* x = a.x + r * a.dim;
    float* y = a.y + r * a.dim;
    double ms = 0;
    for (int64_t i = 0; i < a.dim; ++i) ms += static_cast<double>(x[i]) * x[i];
    ms /= static_cast<double>(a.dim);
    const double inv = 1.0 / std::sqrt(ms + static_cast<double>(a.eps));  // eps inside the root
    for (int64_t i = 0; i < a.dim; ++i) {
      y[i] = static_cast<float>(x[i] * inv * (1.0 + static_cast<double>(a.w[i])));
    }
  }
}

}  // namespace vlmserve
