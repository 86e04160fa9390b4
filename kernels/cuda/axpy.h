// Axpy: y ← a·x + y on the device (fp32). The project's smoke kernel: the first thing the GPU check
// runs, proving that kernels built here launch on the GPU machine. Reference: kernels/cpu/axpy.
#pragma once

#include <cuda_runtime.h>

#include "common/status.h"
#include "kernels/cpu/axpy.h"  // AxpyArgs (device pointers here)

namespace vlmserve {

// Launches on `stream`; does not synchronize.
Status Axpy(const AxpyArgs& args, cudaStream_t stream);

}  // namespace vlmserve
