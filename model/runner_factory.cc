// Runner choice (see runner_factory.h).
#include "model/runner_factory.h"

#include "kernels/kv_layout.h"
#include "model/reference/cpu_runner.h"

namespace vlmserve {

StatusOr<std::unique_ptr<ModelRunner>> CreateModelRunner(const ModelDir& model,
                                                         const std::string& device,
                                                         const RunnerOptions& options) {
  if (device == "cuda") {
    return UnimplementedError(
        "--device cuda: the CUDA runner is not part of this build yet; use --device cpu");
  }
  if (device != "cpu" && device != "auto") {
    return InvalidArgumentError("--device must be auto, cpu or cuda, got " + device);
  }
  CpuRunnerOptions cpu;
  cpu.kv_pages = options.kv_cache_tokens > 0 ? kv::PagesFor(options.kv_cache_tokens) : 0;
  ASSIGN_OR_RETURN(auto runner, CpuModelRunner::Create(*model.checkpoint, model.config, cpu));
  return std::unique_ptr<ModelRunner>(std::move(runner));
}

}  // namespace vlmserve
