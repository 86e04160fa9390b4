// GEMM benchmark: cuBLASLt bf16 (kernels/cuda/gemm) on the shapes of gemma-3-4b-it, TFLOP/s as JSON.
// Method (performance.md): warm-up, L2 flushed before every timed repeat, median of the repeats,
// each repeat timed alone with CUDA events. The torch.matmul baseline for the same shapes is
// bench/torch_gemm_baseline.py, run in the same GPU session by scripts/gpu/check.sh.
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

#define CHECK_CUDA(x)                                                                      \
  do {                                                                                     \
    cudaError_t e = (x);                                                                   \
    if (e != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e));                  \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

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

  // One L2 flush buffer larger than any L2 (H100: 50 MB, H200: 60 MB).
  const size_t kFlushBytes = size_t{256} << 20;
  void* flush = nullptr;
  CHECK_CUDA(cudaMalloc(&flush, kFlushBytes));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));

  std::printf("{\"bench\": \"gemm\", \"device\": \"%s\", \"repeats\": %d, \"results\": [\n",
              dev.c_str(), repeats);
  bool first = true;
  for (const Shape& s : kShapes) {
    __nv_bfloat16 *x, *w, *y;
    CHECK_CUDA(cudaMalloc(&x, s.m * s.k * sizeof(__nv_bfloat16)));
    CHECK_CUDA(cudaMalloc(&w, s.n * s.k * sizeof(__nv_bfloat16)));
    CHECK_CUDA(cudaMalloc(&y, s.m * s.n * sizeof(__nv_bfloat16)));
    // 0x3c00 as bf16 ≈ 0.0078: finite, non-zero, no denormals; values don't change the cost.
    CHECK_CUDA(cudaMemset(x, 0x3c, s.m * s.k * sizeof(__nv_bfloat16)));
    CHECK_CUDA(cudaMemset(w, 0x3c, s.n * s.k * sizeof(__nv_bfloat16)));
    vlmserve::GemmArgs args{x, w, y, s.m, s.n, s.k};
    for (int i = 0; i < 3; ++i) {  // warm-up, also picks and caches the algorithm
      auto st = (*gemm)->Run(args, nullptr);
      if (!st.ok()) {
        std::fprintf(stderr, "%s: %s\n", s.name, st.ToString().c_str());
        return 1;
      }
    }
    std::vector<float> ms;
    for (int r = 0; r < repeats; ++r) {
      CHECK_CUDA(cudaMemsetAsync(flush, r & 0xff, kFlushBytes, nullptr));
      CHECK_CUDA(cudaEventRecord(start, nullptr));
      (void)(*gemm)->Run(args, nullptr);
      CHECK_CUDA(cudaEventRecord(stop, nullptr));
      CHECK_CUDA(cudaEventSynchronize(stop));
      float t = 0;
      CHECK_CUDA(cudaEventElapsedTime(&t, start, stop));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const double median_ms = ms[(ms.size() - 1) / 2];  // lower median, as the torch script
    const double tflops = 2.0 * s.m * s.n * s.k / (median_ms * 1e-3) / 1e12;
    std::printf("%s  {\"name\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"median_us\": %.2f, "
                "\"min_us\": %.2f, \"tflops\": %.1f}",
                first ? "" : ",\n", s.name, s.m, s.n, s.k, median_ms * 1e3, ms.front() * 1e3,
                tflops);
    first = false;
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
  }
  std::printf("\n]}\n");
  cudaFree(flush);
  return 0;
}
