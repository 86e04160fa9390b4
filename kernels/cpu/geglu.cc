// GeGLU reference (see geglu.h).
#include "kernels/cpu/geglu.h"

#include "kernels/cpu/gelu.h"

namespace vlmserve {

void GegluRef(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = GeluTanh(gate[i]) * up[i];
}

}  // namespace vlmserve
