// Embedding lookup reference (see embedding.h).
#include "kernels/cpu/embedding.h"

namespace vlmserve {

void EmbeddingRef(const EmbeddingArgs& a) {
  for (int64_t t = 0; t < a.tokens; ++t) {
    if (a.skip && a.skip[t]) continue;
    const float* row = a.table + static_cast<int64_t>(a.ids[t]) * a.dim;
    float* y = a.y + t * a.dim;
    for (int64_t i = 0; i < a.dim; ++i) y[i] = row[i] * a.scale;
  }
}

}  // namespace vlmserve
