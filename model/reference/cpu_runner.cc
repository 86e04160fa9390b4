// CPU reference runner (see cpu_runner.h).
#include "model/reference/cpu_runner.h"

#include <algorithm>

namespace vlmserve {

StatusOr<std::unique_ptr<CpuModelRunner>> CpuModelRunner::Create(const Checkpoint& ck,
                                                                 const Gemma3Config& config) {
  ASSIGN_OR_RETURN(Gemma3Decoder decoder, Gemma3Decoder::Load(ck, config));
  std::unique_ptr<CpuModelRunner> r(new CpuModelRunner(config, std::move(decoder)));
  if (config.has_vision) {
    ASSIGN_OR_RETURN(SiglipVisionTower tower, SiglipVisionTower::Load(ck, config));
    ASSIGN_OR_RETURN(MultiModalProjector projector, MultiModalProjector::Load(ck, config));
    r->tower_ = std::move(tower);
    r->projector_ = std::move(projector);
  }
  return r;
}

StatusOr<std::vector<float>> CpuModelRunner::EncodeImages(std::span<const float> pixel_values,
                                                          int64_t n) {
  if (!tower_) return InvalidArgumentError("this model has no vision tower (text-only)");
  ASSIGN_OR_RETURN(std::vector<float> vision, tower_->Forward(pixel_values, n));
  return projector_->Forward(vision, n);
}

Status CpuModelRunner::CheckIds(std::span<const int32_t> ids,
                                std::span<const uint8_t> token_type) const {
  const int64_t vocab = decoder_.vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!token_type.empty() && token_type[i]) continue;  // soft token: the id is not looked up
    if (ids[i] < 0 || ids[i] >= vocab) {
      return InvalidArgumentError("token id " + std::to_string(ids[i]) + " at position " +
                                  std::to_string(i) + " is outside the vocabulary of " +
                                  std::to_string(vocab));
    }
  }
  return Status::Ok();
}

StatusOr<std::vector<std::vector<float>>> CpuModelRunner::Prefill(
    std::span<const PrefillRequest> batch) {
  const int64_t D = decoder_.hidden_size();
  // Validate the whole batch first: a bad request must not leave others half-started.
  for (const PrefillRequest& r : batch) {
    if (sequences_.count(r.id)) {
      return InvalidArgumentError("sequence " + std::to_string(r.id) + " already exists");
    }
    if (r.ids.empty()) return InvalidArgumentError("empty prompt");
    if (r.token_type_ids.size() != r.ids.size()) {
      return InvalidArgumentError("token_type_ids has " + std::to_string(r.token_type_ids.size()) +
                                  " entries for " + std::to_string(r.ids.size()) + " ids");
    }
    size_t soft = 0;
    for (uint8_t t : r.token_type_ids) soft += t == 1;
    if (r.soft_tokens.size() != soft * static_cast<size_t>(D)) {
      return InvalidArgumentError("soft_tokens holds " + std::to_string(r.soft_tokens.size()) +
                                  " values for " + std::to_string(soft) +
                                  " image positions of width " + std::to_string(D));
    }
    if (static_cast<int64_t>(r.ids.size()) > config_.text.max_position_embeddings) {
      return InvalidArgumentError("prompt of " + std::to_string(r.ids.size()) +
                                  " tokens exceeds max_position_embeddings");
    }
    RETURN_IF_ERROR(CheckIds(r.ids, r.token_type_ids));
  }
  std::vector<std::vector<float>> out;
  for (const PrefillRequest& r : batch) {
    const size_t n = r.ids.size();
    std::vector<float> emb(n * static_cast<size_t>(D));
    decoder_.Embed(r.ids, r.token_type_ids, emb.data());
    // Soft tokens replace the image positions in order (spec §3.6); they are not scaled.
    size_t next = 0;
    for (size_t i = 0; i < n; ++i) {
      if (r.token_type_ids[i] != 1) continue;
      std::copy_n(r.soft_tokens.data() + next * D, D, emb.data() + i * D);
      ++next;
    }
    Gemma3Decoder::Sequence seq = decoder_.NewSequence();
    out.push_back(decoder_.Forward(seq, emb, r.token_type_ids, r.all_logits));
    sequences_.emplace(r.id, std::move(seq));
  }
  return out;
}

StatusOr<std::vector<std::vector<float>>> CpuModelRunner::Extend(
    std::span<const ExtendRequest> batch) {
  const int64_t D = decoder_.hidden_size();
  for (const ExtendRequest& r : batch) {
    auto it = sequences_.find(r.id);
    if (it == sequences_.end()) return NotFoundError("no live sequence " + std::to_string(r.id));
    if (r.ids.empty()) return InvalidArgumentError("extend by zero tokens");
    if (it->second.length + static_cast<int64_t>(r.ids.size()) >
        config_.text.max_position_embeddings) {
      return OutOfRangeError("sequence " + std::to_string(r.id) +
                             " would exceed max_position_embeddings");
    }
    RETURN_IF_ERROR(CheckIds(r.ids, {}));
  }
  std::vector<std::vector<float>> out;
  for (const ExtendRequest& r : batch) {
    std::vector<float> emb(r.ids.size() * static_cast<size_t>(D));
    decoder_.Embed(r.ids, {}, emb.data());
    const std::vector<uint8_t> text(r.ids.size(), 0);
    out.push_back(decoder_.Forward(sequences_.at(r.id), emb, text, r.all_logits));
  }
  return out;
}

}  // namespace vlmserve
