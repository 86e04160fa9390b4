// The runner interface's shared part (see model_runner.h).
#include "model/model_runner.h"

namespace vlmserve {

StatusOr<std::vector<std::vector<float>>> ModelRunner::Decode(
    std::span<const std::pair<SequenceId, int32_t>> batch) {
  std::vector<ExtendRequest> requests;
  requests.reserve(batch.size());
  for (const auto& [id, token] : batch)
    requests.push_back({id, std::span<const int32_t>(&token, 1), false});
  return Extend(requests);
}

}  // namespace vlmserve
