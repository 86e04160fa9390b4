// ModelRunner: what the engine asks of a model, whatever runs it (the CPU reference here, the CUDA
// runner later). Shaped for batches of sequences of different lengths:
//   EncodeImages  pixel_values → soft tokens (vision tower + projector)
//   Prefill       start sequences from prompt ids, token types and their images' soft tokens
//   Extend        append k tokens to live sequences using their KV cache (jump-forward over forced
//                 tokens, prefix reuse); Decode is Extend by one token
//   Release       free a sequence's KV cache
// Logits come back per request: [1, vocab] for the last position, or [n, vocab] when all_logits.
// A runner is used by one thread at a time (the engine thread owns it).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "model/weights/config.h"

namespace vlmserve {

using SequenceId = uint64_t;

struct PrefillRequest {
  SequenceId id = 0;
  std::span<const int32_t> ids;             // the prompt
  std::span<const uint8_t> token_type_ids;  // 1 on image soft tokens
  std::span<const float> soft_tokens;       // [count of 1s, hidden_size], images in prompt order
  bool all_logits = false;
};

struct ExtendRequest {
  SequenceId id = 0;
  std::span<const int32_t> ids;  // text tokens to append
  bool all_logits = false;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const Gemma3Config& config() const = 0;
  virtual const char* device() const = 0;  // "cpu", "cuda", ... (reported by GetModelInfo)

  // pixel_values [n, 3, S, S] → [n, mm_tokens_per_image, hidden_size].
  virtual StatusOr<std::vector<float>> EncodeImages(std::span<const float> pixel_values,
                                                    int64_t n) = 0;
  virtual StatusOr<std::vector<std::vector<float>>> Prefill(
      std::span<const PrefillRequest> batch) = 0;
  virtual StatusOr<std::vector<std::vector<float>>> Extend(
      std::span<const ExtendRequest> batch) = 0;
  virtual void Release(SequenceId id) = 0;
  virtual size_t live_sequences() const = 0;

  // One decode step for each (sequence, token): Extend by one (model_runner.cc).
  StatusOr<std::vector<std::vector<float>>> Decode(
      std::span<const std::pair<SequenceId, int32_t>> batch);
};

}  // namespace vlmserve
