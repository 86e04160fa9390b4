// GEMM benchmark: cuBLASLt bf16 (kernels/cuda/gemm) on the shapes of gemma-3-4b-it, TFLOP/s as
// JSON. Method (performance.md): warm-up, L2 flushed before every timed repeat, median of the
// repeats, each repeat timed alone with CUDA events. The torch.matmul baseline for the same shapes
// is bench/torch_gemm_baseline.py, run in the same GPU session by scripts/gpu/check.sh.
//
//   vlmserve_bench_gemm [--repeats N]   → one JSON object on stdout
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/cuda_timer.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"

namespace {

struct Shape {
  const char* name;
  int64_t m, n, k;
};

// y[m, n] = x[m, k] · w[n, k]ᵀ; the shapes of one 896² image and a ~330-token prompt (spec §10.2).
const Shape kShapes[] = {
    {"vision_qkv_fused", 4096, 3456, 1152}, {"vision_out_proj", 4096, 1152, 1152},
    {"vision_fc1", 4096, 4304, 1152},       {"vision_fc2", 4096, 1152, 4304},
    {"prefill_q", 330, 2048, 2560},         {"prefill_gate_up", 330, 20480, 2560},
    {"prefill_down", 330, 2560, 10240},     {"decode_gate_up", 1, 20480, 2560},
    {"decode_lm_head", 1, 262208, 2560},    {"square_8192", 8192, 8192, 8192},
};

}  // namespace

int main(int argc, char** argv) {
  int repeats = 20;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--repeats") == 0) repeats = std::max(1, std::atoi(argv[i + 1]));

  auto devices = vlmserve::DescribeCudaDevices();
  if (!devices.ok()) {
    std::printf("{\"bench\": \"gemm\", \"skipped\": \"%s\"}\n", devices.status().message().c_str());
    return 0;
  }
  auto gemm = vlmserve::CublasLtGemm::Create();
  if (!gemm.ok()) {
    std::fprintf(stderr, "%s\n", gemm.status().ToString().c_str());
    return 1;
  }
  std::string dev = *devices;
  dev.erase(std::remove(dev.begin(), dev.end(), '\n'), dev.end());

  vlmserve::bench::CudaTimer timer(repeats);

  std::printf("{\"bench\": \"gemm\", \"device\": \"%s\", \"repeats\": %d, \"results\": [\n",
              dev.c_str(), repeats);
  bool first = true;
  for (const Shape& s : kShapes) {
    __nv_bfloat16 *x, *w, *y;
    BENCH_CHECK_CUDA(cudaMalloc(&x, s.m * s.k * sizeof(__nv_bfloat16)));
    BENCH_CHECK_CUDA(cudaMalloc(&w, s.n * s.k * sizeof(__nv_bfloat16)));
    BENCH_CHECK_CUDA(cudaMalloc(&y, s.m * s.n * sizeof(__nv_bfloat16)));
    // 0x3c00 as bf16 ≈ 0.0078: finite, non-zero, no denormals; values don't change the cost.
    BENCH_CHECK_CUDA(cudaMemset(x, 0x3c, s.m * s.k * sizeof(__nv_bfloat16)));
    BENCH_CHECK_CUDA(cudaMemset(w, 0x3c, s.n * s.k * sizeof(__nv_bfloat16)));
    vlmserve::GemmArgs args{x, w, y, s.m, s.n, s.k};
    // Warm-up (also picks and caches the algorithm), then the timed repeats.
    const auto [median_us, min_us] =
        timer.Time(s.name, [&] { return (*gemm)->Run(args, nullptr); });
    const double median_ms = median_us * 1e-3;
    const double tflops = 2.0 * s.m * s.n * s.k / (median_ms * 1e-3) / 1e12;
    std::printf(
        "%s  {\"name\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"median_us\": %.2f, "
        "\"min_us\": %.2f, \"tflops\": %.1f}",
        first ? "" : ",\n", s.name, s.m, s.n, s.k, median_us, min_us, tflops);
    first = false;
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
  }
  std::printf("\n]}\n");
  return 0;
}
