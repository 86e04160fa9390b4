// CpuModelRunner: the ModelRunner of the fp32 CPU reference (SigLIP tower, projector, decoder).
// Correct on any Gemma 3 checkpoint, slowly: weights are widened to fp32 in memory (4 bytes per
// parameter: the 4B model needs ≈17 GB), and sequences in a batch are computed one after the
// other, so a sequence's logits never depend on its batch.
#pragma once

#include <map>
#include <optional>

#include "model/model_runner.h"
#include "model/reference/decoder.h"
#include "model/reference/projector.h"
#include "model/reference/siglip.h"
#include "model/weights/checkpoint.h"

namespace vlmserve {

class CpuModelRunner : public ModelRunner {
 public:
  static StatusOr<std::unique_ptr<CpuModelRunner>> Create(const Checkpoint& ck,
                                                          const Gemma3Config& config);

  const Gemma3Config& config() const override { return config_; }
  const char* device() const override { return "cpu"; }
  StatusOr<std::vector<float>> EncodeImages(std::span<const float> pixel_values,
                                            int64_t n) override;
  StatusOr<std::vector<std::vector<float>>> Prefill(std::span<const PrefillRequest> batch) override;
  StatusOr<std::vector<std::vector<float>>> Extend(std::span<const ExtendRequest> batch) override;
  void Release(SequenceId id) override { sequences_.erase(id); }
  size_t live_sequences() const override { return sequences_.size(); }

 private:
  CpuModelRunner(Gemma3Config c, Gemma3Decoder d) : config_(std::move(c)), decoder_(std::move(d)) {}
  Status CheckIds(std::span<const int32_t> ids, std::span<const uint8_t> token_type) const;

  Gemma3Config config_;
  Gemma3Decoder decoder_;
  std::optional<SiglipVisionTower> tower_;  // absent for text-only models
  std::optional<MultiModalProjector> projector_;
  std::map<SequenceId, Gemma3Decoder::Sequence> sequences_;
};

}  // namespace vlmserve
