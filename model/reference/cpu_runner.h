// CpuModelRunner: the ModelRunner of the fp32 CPU reference (SigLIP tower, projector, decoder).
// Correct on any Gemma 3 checkpoint, slowly: weights are widened to fp32 in memory (4 bytes per
// parameter: the 4B model needs ≈17 GB). Step runs all its rows' tokens through each linear
// layer together (the reference GEMM computes each row exactly as alone, blocked across rows),
// attention per row over the paged pools, so a sequence's results never depend on its batch;
// sampling is kernels/cpu/sample.h's reference.
//
// KV memory: per layer, K and V pools of `kv_pages` pages (fp32, [page][16][kv_heads][head_dim]),
// allocated uninitialised so that pages never written cost no resident memory.
#pragma once

#include <map>
#include <memory>
#include <optional>

#include "model/kv_sizing.h"
#include "model/model_runner.h"
#include "model/reference/decoder.h"
#include "model/reference/projector.h"
#include "model/reference/siglip.h"
#include "model/weights/checkpoint.h"

namespace vlmserve {

struct CpuRunnerOptions {
  int64_t kv_pages = 0;  // pages per pool (full and sliding); 0 = sized by `kv`
  KvSizing kv;           // model/kv_sizing.h (no device: tokens, bytes, or 16384 tokens)
};

class CpuModelRunner : public ModelRunner {
 public:
  static StatusOr<std::unique_ptr<CpuModelRunner>> Create(const Checkpoint& ck,
                                                          const Gemma3Config& config,
                                                          const CpuRunnerOptions& options = {});

  const Gemma3Config& config() const override { return config_; }
  const char* device() const override { return "cpu"; }
  KvPoolSizes kv_pages() const override { return pools_; }
  RunnerMemory memory() const override { return memory_; }
  StatusOr<ImageHandle> EncodeImages(std::span<const float> pixel_values, int64_t n) override;
  void ReleaseImages(ImageHandle handle) override { images_.erase(handle); }
  size_t live_image_batches() const override { return images_.size(); }
  StatusOr<std::vector<float>> ReadImages(ImageHandle handle) const override;
  StatusOr<std::vector<StepOutput>> Step(std::span<const StepRow> rows) override;

 private:
  CpuModelRunner(Gemma3Config c, Gemma3Decoder d) : config_(std::move(c)), decoder_(std::move(d)) {}
  Status Validate(const StepRow& row) const;

  Gemma3Config config_;
  Gemma3Decoder decoder_;
  std::optional<SiglipVisionTower> tower_;  // absent for text-only models
  std::optional<MultiModalProjector> projector_;
  KvPoolSizes pools_;
  RunnerMemory memory_;
  bool has_full_ = false, has_sliding_ = false;
  std::vector<std::unique_ptr<float[]>> k_, v_;  // per layer: its kind's pool
  std::vector<float*> k_ptrs_, v_ptrs_;
  struct ImageBatch {
    int64_t n = 0;
    std::vector<float> soft;  // [n, mm_tokens_per_image, D]
  };
  std::map<ImageHandle, ImageBatch> images_;
  ImageHandle next_handle_ = 1;
};

}  // namespace vlmserve
