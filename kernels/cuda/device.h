// Device discovery without ever failing hard: on a machine without a driver or GPU these return an
// error Status (tests skip on it; the server falls back to the CPU runner) instead of aborting.
#pragma once

#include <string>

#include "common/status.h"

namespace vlmserve {

// Number of visible CUDA devices, or the cudaGetDeviceCount error (no driver, no device, ...).
// A count of 0 is reported as UNAVAILABLE too, so callers test only ok().
StatusOr<int> CudaDeviceCount();

// One line per device: "0: NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, driver 13.0, runtime 13.0".
StatusOr<std::string> DescribeCudaDevices();

}  // namespace vlmserve
