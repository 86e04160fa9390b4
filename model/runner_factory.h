// CreateModelRunner: the one place that chooses how a model runs. The server, vlmserve-generate
// and the benchmarks ask for a device by name and get a ModelRunner:
//   "cpu"   the fp32 CPU reference (model/reference/): exact, slow
//   "cuda"  the CUDA runner (model/cuda/cuda_runner.h) in builds with CUDA — written but not yet
//           verified on a GPU (issue 25); UNIMPLEMENTED in builds without CUDA
//   "auto"  the CPU reference, until the CUDA runner has passed its GPU check
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "model/model_dir.h"
#include "model/model_runner.h"

namespace vlmserve {

struct RunnerOptions {
  // The KV cache's size (model/kv_sizing.h: tokens, else bytes, else a fraction of the GPU's
  // memory; none = 16384 tokens).
  int64_t kv_cache_tokens = 0;
  int64_t kv_cache_bytes = 0;
  double gpu_memory_fraction = 0;  // CUDA only
  // CUDA only: called as the weights reach the device (bytes uploaded so far, total), about every
  // 10 % and at the end — a multi-GB load takes seconds to minutes, and the log should say so.
  std::function<void(uint64_t done, uint64_t total)> on_load_progress;
};

// `model` must outlive the runner (its weights may be used in place).
StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const ModelDir& model,
                                                         const std::string& device,
                                                         const RunnerOptions& options = {});

// Whether this build has the CUDA runner (for logs and --help).
bool CudaRunnerBuilt();

}  // namespace vlmserve
