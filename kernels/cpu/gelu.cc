// GELU (tanh approximation) reference (see gelu.h), evaluated in double.
#include "kernels/cpu/gelu.h"

#include <cmath>

namespace vlmserve {

float GeluTanh(float x) {
  const double kSqrt2OverPi = 0.7978845608028654;  // √(2/π)
  const double v = x;
  return static_cast<float>(0.5 * v * (1.0 + std::tanh(kSqrt2OverPi * (v + 0.044715 * v * v * v))));
}

void GeluTanhRef(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = GeluTanh(x[i]);
}

}  // namespace vlmserve
