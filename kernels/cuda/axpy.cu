// The smoke kernel (see axpy.h): one thread per element, grid-stride loop.
#include "kernels/cuda/axpy.h"
#include "kernels/cuda/cuda_check.h"

namespace vlmserve {
namespace {

__global__ void AxpyKernel(float a, const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = a * x[i] + y[i];
  }
}

}  // namespace

Status Axpy(const AxpyArgs& args, cudaStream_t stream) {
  if (args.n < 0 || (args.n > 0 && (!args.x || !args.y)))
    return InvalidArgumentError("Axpy: null pointer or negative size");
  if (args.n == 0) return Status::Ok();
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((args.n + kThreads - 1) / kThreads, 65535);
  AxpyKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(args.a, args.x, args.y,
                                                                     args.n);
  CUDA_CHECK(cudaGetLastError());
  return Status::Ok();
}

}  // namespace vlmserve
