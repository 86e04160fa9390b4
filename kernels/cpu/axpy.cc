// fp32 reference for the smoke kernel (see axpy.h).
#include "kernels/cpu/axpy.h"

namespace vlmserve {

void AxpyRef(const AxpyArgs& args) {
  for (int64_t i = 0; i < args.n; ++i) args.y[i] = args.a * args.x[i] + args.y[i];
}

}  // namespace vlmserve
