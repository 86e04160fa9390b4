// Runner choice (see runner_factory.h).
#include "model/runner_factory.h"

#include "model/reference/cpu_runner.h"
#ifdef VLMSERVE_HAVE_CUDA_RUNNER
#include "model/cuda/cuda_runner.h"
#endif

namespace vlmserve {

StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const ModelDir& model,
                                                         const std::string& device,
                                                         const RunnerOptions& options) {
  KvSizing sizing;
  sizing.tokens = options.kv_cache_tokens;
  sizing.bytes = options.kv_cache_bytes;
  sizing.memory_fraction = options.gpu_memory_fraction;
  if (device == "cuda") {
#ifdef VLMSERVE_HAVE_CUDA_RUNNER
    CudaRunnerOptions cuda;
    cuda.kv = sizing;
    cuda.on_load_progress = options.on_load_progress;
    ASSIGN_OR_RETURN(auto runner, CudaModelRunner::Create(*model.checkpoint, model.config, cuda));
    return std::unique_ptr<ModelRunner>(std::move(runner));
#else
    return UnimplementedError(
        "--device cuda: this build has no CUDA (configured without nvcc); use --device cpu");
#endif
  }
  if (device != "cpu" && device != "auto") {
    return InvalidArgumentError("--device must be auto, cpu or cuda, got " + device);
  }
  // auto: the CPU reference until the CUDA runner has passed its GPU check (issue 25).
  CpuRunnerOptions cpu;
  cpu.kv = sizing;
  cpu.kv.memory_fraction = 0;  // no device memory to take a fraction of
  ASSIGN_OR_RETURN(auto runner, CpuModelRunner::Create(*model.checkpoint, model.config, cpu));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

bool CudaRunnerBuilt() {
#ifdef VLMSERVE_HAVE_CUDA_RUNNER
  return true;
#else
  return false;
#endif
}

}  // namespace vlmserve
