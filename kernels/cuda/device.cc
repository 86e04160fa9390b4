// CUDA device discovery (see device.h). Host-only code; compiled by the C++ compiler.
#include "kernels/cuda/device.h"

#include <cuda_runtime.h>

#include <cstdio>

namespace vlmserve {

StatusOr<int> CudaDeviceCount() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return UnavailableError(std::string("no usable CUDA device: cudaGetDeviceCount: ") +
                            cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
  }
  if (count == 0) return UnavailableError("no CUDA device visible (cudaGetDeviceCount = 0)");
  return count;
}

StatusOr<std::string> DescribeCudaDevices() {
  ASSIGN_OR_RETURN(int count, CudaDeviceCount());
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::string out;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) continue;
    char line[512];
    std::snprintf(line, sizeof(line), "%d: %s, sm_%d%d, %.1f GiB, %d SMs, driver %d.%d, runtime %d.%d\n",
                  d, prop.name, prop.major, prop.minor,
                  static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                  prop.multiProcessorCount, driver / 1000, (driver % 1000) / 10, runtime / 1000,
                  (runtime % 1000) / 10);
    out += line;
  }
  return out;
}

}  // namespace vlmserve
