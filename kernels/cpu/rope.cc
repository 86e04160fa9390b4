// RoPE reference (see rope.h). fp32 throughout, as transformers' fp32 path: float32 pow for the
// frequencies, a float32 product for the angle, float32 cos/sin, float32 rotation.
#include "kernels/cpu/rope.h"

#include <cmath>

namespace vlmserve {

std::vector<float> RopeInvFreq(int64_t head_dim, double base, double linear_factor) {
  std::vector<float> inv(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float f = 1.0f / std::pow(static_cast<float>(base), exponent);
    inv[static_cast<size_t>(i)] = f / static_cast<float>(linear_factor);
  }
  return inv;
}

void RopeRef(const RopeArgs& a) {
  const int64_t half = a.head_dim / 2;
  for (int64_t t = 0; t < a.tokens; ++t) {
    const float pos = static_cast<float>(a.positions[t]);
    for (int64_t h = 0; h < a.heads; ++h) {
      float* x = a.x + (t * a.heads + h) * a.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float theta = pos * a.inv_freq[i];
        const float c = std::cos(theta), s = std::sin(theta);
        const float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
      }
    }
  }
}

}  // namespace vlmserve
