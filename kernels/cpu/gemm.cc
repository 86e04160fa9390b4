// fp32 reference GEMM (see gemm.h). Accumulates each output in fp32 in k order.
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace vlmserve {
namespace {

void GemmRows(const GemmRefArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t i = row_begin; i < row_end; ++i) {
    const float* xi = a.x + i * a.k;
    float* yi = a.y + i * a.n;
    if (a.w_input_major) {
      // y[i, :] = Σ_p x[i, p] · w[p, :], still summed in p order for every output.
      for (int64_t j = 0; j < a.n; ++j) yi[j] = 0.f;
      for (int64_t p = 0; p < a.k; ++p) {
        const float xp = xi[p];
        const float* wp = a.w + p * a.n;
        for (int64_t j = 0; j < a.n; ++j) yi[j] += xp * wp[j];
      }
    } else {
      for (int64_t j = 0; j < a.n; ++j) {
        const float* wj = a.w + j * a.k;
        float acc = 0.f;
        for (int64_t p = 0; p < a.k; ++p) acc += xi[p] * wj[p];
        yi[j] = acc;
      }
    }
    if (a.bias) {
      for (int64_t j = 0; j < a.n; ++j) yi[j] += a.bias[j];
    }
  }
}

}  // namespace

void GemmRef(const GemmRefArgs& args) {
  // Threads only pay off for large problems; small test shapes stay single-threaded.
  const int64_t work = args.m * args.n * args.k;
  const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const int64_t threads = work < (int64_t{1} << 22) ? 1 : std::min<int64_t>(hw, args.m);
  if (threads <= 1) {
    GemmRows(args, 0, args.m);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (args.m + threads - 1) / threads;
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t b = t * chunk, e = std::min(args.m, b + chunk);
    if (b < e) pool.emplace_back(GemmRows, std::cref(args), b, e);
  }
  for (auto& th : pool) th.join();
}

void LinearRef(const float* x, const std::vector<float>& w, const std::vector<float>& b, float* y,
               int64_t m, int64_t n, int64_t k) {
  GemmRefArgs g;
  g.x = x;
  g.w = w.data();
  g.bias = b.empty() ? nullptr : b.data();
  g.y = y;
  g.m = m;
  g.n = n;
  g.k = k;
  GemmRef(g);
}

}  // namespace vlmserve
