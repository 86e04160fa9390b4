// Patch embedding reference (see patch_embed.h).
#include "kernels/cpu/patch_embed.h"

#include <cstddef>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace vlmserve {

void PatchEmbedRef(const PatchEmbedArgs& a) {
  const int64_t side = a.s / a.p, patches = side * side, cols = a.c * a.p * a.p;
  std::vector<float> im2col(static_cast<size_t>(patches * cols));
  for (int64_t img = 0; img < a.n; ++img) {
    const float* px = a.pixels + img * a.c * a.s * a.s;
    for (int64_t row = 0; row < side; ++row) {
      for (int64_t col = 0; col < side; ++col) {
        float* v = &im2col[static_cast<size_t>((row * side + col) * cols)];
        for (int64_t ch = 0; ch < a.c; ++ch) {
          for (int64_t ky = 0; ky < a.p; ++ky) {
            for (int64_t kx = 0; kx < a.p; ++kx) {
              *v++ = px[(ch * a.s + row * a.p + ky) * a.s + col * a.p + kx];
            }
          }
        }
      }
    }
    GemmRefArgs g;
    g.x = im2col.data();
    g.w = a.w;
    g.bias = a.b;
    g.y = a.y + img * patches * a.d;
    g.m = patches;
    g.n = a.d;
    g.k = cols;
    GemmRef(g);
  }
}

}  // namespace vlmserve
