// ServeEngine: the serving loop between the transport (server/) and the model (a ModelRunner).
//
// Threading contract (see engine/README.md): Submit() may be called from any thread (gRPC
// reactors); it only validates the queue's capacity and enqueues. One engine thread owns the
// runner and does all model work, one request after another for now: decode frames → grid →
// preprocess → prompt → vision → prefill → decode, streaming deltas to the request's sink. A
// request's sink gets zero or more OnDelta calls and then exactly one OnResult or OnError, all from
// the engine thread. Cancellation is a flag the engine checks before starting a request and
// between decode steps; a cancelled request ends with OnError(CANCELLED).
// Scheduling (batching, admission by KV budget, deadlines, drain) comes later; this interface is
// meant to stay.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "engine/generate.h"
#include "engine/sampler.h"
#include "model/image.h"
#include "model/model_dir.h"
#include "model/model_runner.h"
#include "model/prompt.h"

namespace vlmserve {

// One frame as it arrived: encoded bytes (PNG/JPEG) or raw RGB8.
struct FrameInput {
  bool raw = false;
  std::string bytes;               // encoded image, or raw RGB8 (width * height * 3)
  uint32_t width = 0, height = 0;  // raw only
};

struct ServeRequest {
  std::string request_id, session_id;
  std::vector<FrameInput> frames;  // 1-4 frames composed into the grid …
  std::optional<FrameInput> grid;  // … or one pre-composed image; neither for text-only prompts
  std::string prompt, system_prompt;
  int32_t max_new_tokens = 64;
  SamplingParams sampling;
  bool pan_and_scan = false;
  std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
};

struct ServeTimings {  // microseconds
  int64_t queue_us = 0, preprocess_us = 0, vision_us = 0, prefill_us = 0, decode_us = 0;
  int64_t first_token_us = 0, total_us = 0;
};

struct ServeResult {
  std::string text;
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kLength;
  int32_t prompt_tokens = 0;
  int32_t images = 0;  // image sequences, pan & scan crops included
  ServeTimings timings;
};

// Receives one request's output, on the engine thread.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void OnDelta(std::vector<int32_t> token_ids, std::string text) = 0;
  virtual void OnResult(ServeResult result) = 0;
  virtual void OnError(Status status) = 0;
};

struct EngineOptions {
  ImageLimits image_limits;
  PromptLimits prompt_limits;
  size_t max_queue = 64;  // queued requests beyond the one running; more is RESOURCE_EXHAUSTED
  int64_t max_context_tokens =
      0;  // prompt + max_new_tokens; 0 = the model's max_position_embeddings
};

class ServeEngine {
 public:
  // `model` must outlive the engine; the engine owns the runner.
  static StatusOr<std::unique_ptr<ServeEngine>> Create(const ModelDir& model,
                                                       std::unique_ptr<ModelRunner> runner,
                                                       EngineOptions options);
  ~ServeEngine();  // stops the thread; queued requests get UNAVAILABLE
  ServeEngine(const ServeEngine&) = delete;
  ServeEngine& operator=(const ServeEngine&) = delete;

  // Runs one request synchronously on the calling thread before Start() (a start-up warm-up).
  StatusOr<ServeResult> RunNow(const ServeRequest& request);

  void Start();
  // Queues a request. RESOURCE_EXHAUSTED (with the queue size) when full, UNAVAILABLE when stopped.
  Status Submit(std::shared_ptr<const ServeRequest> request, std::shared_ptr<ResponseSink> sink,
                std::shared_ptr<std::atomic<bool>> cancelled);
  void Stop();

  size_t queued() const;
  const ModelDir& model() const { return model_; }
  int64_t max_context_tokens() const { return max_context_; }

 private:
  ServeEngine(const ModelDir& model, std::unique_ptr<ModelRunner> runner, EngineOptions options,
              PromptBuilder builder);
  struct Job {
    std::shared_ptr<const ServeRequest> request;
    std::shared_ptr<ResponseSink> sink;
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  void Loop();
  // The whole pipeline for one request; deltas go to `sink` when given.
  StatusOr<ServeResult> Run(const ServeRequest& r, ResponseSink* sink,
                            const std::atomic<bool>* cancelled);

  const ModelDir& model_;
  std::unique_ptr<ModelRunner> runner_;
  EngineOptions options_;
  int64_t max_context_;
  PromptBuilder builder_;
  SequenceId next_sequence_ = 1;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool running_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace vlmserve
