// ModelRunner: what the engine asks of a model, whatever runs it (the CPU reference now, the CUDA
// runner next). Two calls:
//
//   EncodeImages(pixels of a batch of images, from any number of requests) → an ImageHandle: the
//       soft tokens stay inside the runner (on the GPU for the CUDA runner) until a Step's prefill
//       rows consume them and the engine releases the handle.
//   Step(rows) → one model step for many sequences. A row is a prefill chunk (ids at positions
//       start .. start + n − 1, its images' soft tokens, never half an image) or decode tokens of
//       a live sequence (one sampled token, or several for a forced run: jump-forward), with the
//       sequence's block tables into the paged KV cache (kernels/kv_layout.h). The runner writes
//       the rows' K/V into the pages, and samples inside: per-row temperature, top-k, top-p,
//       counter-based seed, optional allowed-token mask; it returns the sampled id and its
//       logprob (top logprobs when asked), full logits only when a test asks.
//
// The runner owns the KV memory (two pools of pages: full and sliding layers; sizes fixed at
// creation, kv_pages()); the engine owns block tables and free lists (engine/kv_manager.h). A
// sequence's results never depend on its batch or on how its prefill was chunked. A runner is used
// by one thread at a time (the engine thread owns it).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/sample.h"
#include "model/weights/config.h"

namespace vlmserve {

using SequenceId = uint64_t;
using ImageHandle = uint64_t;  // 0 is never a valid handle

// One image of an EncodeImages batch: the soft tokens that fill one soft-token run of a prefill
// chunk.
struct ImageRef {
  ImageHandle handle = 0;
  int64_t index = 0;  // which image of that batch
};

enum class LogitsMode { kNone, kLast, kAll };  // what a row returns besides its sample

struct StepRow {
  SequenceId sequence = 0;  // for errors and logs only: the runner keeps no per-sequence state
  std::span<const int32_t> tokens;       // the ids to append (prefill chunk or decode tokens)
  std::span<const uint8_t> token_types;  // 1 on image soft tokens; empty = all text (decode)
  std::span<const ImageRef> images;      // one per soft-token run in `tokens`, in order
  int64_t start = 0;                     // position of tokens[0] in the sequence
  // Block tables (kernels/kv_layout.h) covering positions 0 .. start + tokens.size() − 1; the
  // sliding table may have released entries before the window. A model without sliding (or
  // without full) layers leaves that table empty.
  std::span<const int32_t> full_table, sliding_table;
  // Sampling after the row's last token: a non-final prefill chunk samples nothing.
  bool sample = true;
  SamplingParams sampling;
  uint64_t draw = 0;                  // the sequence's draw counter for this sample
  const uint32_t* allowed = nullptr;  // allowed-token mask, MaskWords(vocab) words; null = all
  int32_t top_logprobs = 0;
  LogitsMode logits = LogitsMode::kNone;
};

struct StepOutput {
  int32_t token = -1;  // -1 when the row did not sample
  float logprob = 0.f;
  std::vector<std::pair<int32_t, float>> top_logprobs;
  std::vector<float> logits;  // [1 or n, vocab] when asked
};

struct KvPoolSizes {
  int64_t full_pages = 0, sliding_pages = 0;  // pages of kv::kPageTokens tokens in each pool
};

// What a runner holds, for the start-up log and GetModelInfo.
struct RunnerMemory {
  uint64_t weights_bytes = 0;   // the weights as the runner stores them (fp32 CPU, bf16 GPU)
  uint64_t kv_cache_bytes = 0;  // both pools, every layer
  std::string kv_sizing;        // which setting sized the cache, and from what (KvCachePlan::how)
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const Gemma3Config& config() const = 0;
  virtual const char* device() const = 0;  // "cpu", "cuda", ... (reported by GetModelInfo)
  virtual KvPoolSizes kv_pages() const = 0;
  virtual RunnerMemory memory() const { return {}; }

  // pixel_values [n, 3, S, S] → a handle to n images' soft tokens [n, mm_tokens_per_image, D].
  virtual StatusOr<ImageHandle> EncodeImages(std::span<const float> pixel_values, int64_t n) = 0;
  virtual void ReleaseImages(ImageHandle handle) = 0;
  virtual size_t live_image_batches() const = 0;
  // True when EncodeImages only queues the work (the CUDA runner's second stream): the handle is
  // usable at once, and Step waits for the images it reads. Its time then is the device's,
  // reported by ImagesDeviceMicros once the batch has finished (-1 before, or when unknown).
  virtual bool EncodesAsync() const { return false; }
  virtual int64_t ImagesDeviceMicros(ImageHandle) const { return -1; }
  // A live batch's soft tokens as fp32 [n, mm_tokens_per_image, D] (bf16 values widened on the
  // CUDA runner): for fidelity checks against transformers' get_image_features (vlmserve-dump),
  // never on the serving path. NOT_FOUND for an unknown handle.
  virtual StatusOr<std::vector<float>> ReadImages(ImageHandle handle) const = 0;

  // One output per row, in order. The whole batch is validated before any row runs: a bad row
  // fails the step and changes no page.
  virtual StatusOr<std::vector<StepOutput>> Step(std::span<const StepRow> rows) = 0;

  // OK while the runner can serve; an error once its device is unusable for good (a sticky CUDA
  // error: every later call would fail too). The engine asks after a failed call; on an error it
  // ends every request and reports the failure, and the server exits for a restart
  // (reliability.md G10). A failed call alone (bad input, one allocation) is not fatal.
  virtual Status Health() const { return Status::Ok(); }
};

// The checks every runner makes on a row before running anything: tokens in the vocabulary,
// positions within max_position_embeddings, whole images with one ImageRef each, block tables
// covering the positions read and written with pages of the pools, sampling parameters.
// `has_full` / `has_sliding`: whether the model has layers of that kind.
Status ValidateStepRow(const StepRow& row, const Gemma3Config& config, const KvPoolSizes& pools,
                       bool has_full, bool has_sliding);

// A row's image reference against the runner's live batches: `batch_images` is the size of the
// batch behind ref.handle, or -1 when no live batch has that handle.
Status ValidateImageRef(const StepRow& row, const ImageRef& ref, int64_t batch_images);

}  // namespace vlmserve
