// ServeEngine: the serving loop between the transport (server/) and the model (a ModelRunner).
//
// Threading contract (see engine/README.md): Submit() may be called from any thread (gRPC
// reactors); it only checks the queue's capacity (requests and bytes) and enqueues. One engine
// thread owns the runner and does all model work, one request after another for now: the
// processor (frames → grid → pixels; messages → ids) → context check → vision → prefill → decode,
// streaming deltas to the request's sink. A request's sink gets zero or more OnDelta calls and
// then exactly one OnResult or OnError, all from the engine thread. Before a request starts and
// between its steps the engine checks, in this order: Stop() (UNAVAILABLE), the request's deadline
// (DEADLINE_EXCEEDED), its cancellation flag (CANCELLED). Batching and admission by KV budget come
// with the scheduler.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "engine/kv_manager.h"
#include "engine/request.h"
#include "kernels/cpu/sample.h"
#include "model/model_dir.h"
#include "model/model_runner.h"
#include "model/processor.h"

namespace vlmserve {

struct EngineOptions {
  ImageLimits image_limits;
  PromptLimits prompt_limits;
  size_t max_queue = 64;  // queued requests beyond the one running; more is RESOURCE_EXHAUSTED
  // Bytes (images + texts) that queued requests may hold together; a request that would pass it
  // is RESOURCE_EXHAUSTED, except into an empty queue (so any single request can run).
  uint64_t max_queued_bytes = 256u << 20;
  int64_t max_context_tokens =
      0;  // prompt + max_new_tokens; 0 = the model's max_position_embeddings
  // Tokens of KV cache the runner holds (each of its two pools); 0 = the runner's default. A
  // request must fit: the context limit is lowered to what one sequence can hold.
  int64_t kv_cache_tokens = 0;
  // Prefill in chunks of at most this many tokens (0 = the whole prompt in one step). A chunk
  // never splits an image's soft tokens, so a chunk can be longer when an image needs it.
  int64_t prefill_chunk_tokens = 0;
  // Test hook (reliability.md "delay hooks"): sleep this long after each generated token, so
  // tests can hold a request in flight. Zero in production.
  std::chrono::milliseconds test_token_delay{0};
};

// What the engine is doing, for logs, retry hints and tests. A snapshot, taken under the lock.
struct EngineStats {
  size_t queued = 0;
  uint64_t queued_bytes = 0;
  bool running = false;           // a request is being worked on
  uint64_t completed = 0;         // requests that ended, however
  uint64_t expired_in_queue = 0;  // deadline passed before they started (they never started)
  uint64_t cancelled_in_queue = 0;
  uint64_t rejected_full = 0;  // RESOURCE_EXHAUSTED at Submit
  double mean_service_ms = 0;  // moving average of a started request's time on the engine
  KvCounters kv;               // pages and live sequences, after the last step
};

// What the transport reports about the served model (GetModelInfo) and validates against.
struct EngineModelInfo {
  std::string model_type, architecture;
  std::string model_name;  // the model directory's name, never its location
  std::string device;      // the runner's ("cpu", ...)
  uint64_t parameters = 0;
  bool has_vision = false;
  int64_t image_size = 0, mm_tokens_per_image = 0, vocab_size = 0;
  int64_t max_context_tokens = 0;
};

// How long a refused client should wait before retrying: the work ahead of it (queued + running
// requests) divided by the engine's concurrency, at the recent service time; a first guess of
// `fallback_ms` per request before any has finished. Clamped to [10 ms, 60 s]. Pure, for tests.
int64_t RetryAfterMs(size_t queued, bool running, double mean_service_ms, int concurrency = 1,
                     double fallback_ms = 100);

// Prefill chunks [begin, end) over a prompt with these token types: at most `max_chunk` tokens
// each (0 = one chunk), never splitting a run of image soft tokens — a cut that would fall inside
// one moves to the run's start, or, when the run starts the chunk, to its end.
std::vector<std::pair<int64_t, int64_t>> PrefillChunks(std::span<const uint8_t> token_types,
                                                       int64_t max_chunk);

class ServeEngine {
 public:
  // Loads a model directory and creates its runner for `device` (model/runner_factory.h).
  static StatusOr<std::unique_ptr<ServeEngine>> Load(const std::string& model_dir,
                                                     const std::string& device,
                                                     EngineOptions options);
  // An engine over a loaded model and a given runner (tests use a fake runner).
  static StatusOr<std::unique_ptr<ServeEngine>> Create(std::unique_ptr<ModelDir> model,
                                                       std::unique_ptr<ModelRunner> runner,
                                                       EngineOptions options);
  ~ServeEngine();  // stops the thread; queued requests get UNAVAILABLE
  ServeEngine(const ServeEngine&) = delete;
  ServeEngine& operator=(const ServeEngine&) = delete;

  // Runs one request synchronously on the calling thread, before Start() (the server's warm-up,
  // vlmserve-generate). Deltas go to `sink` when given; the result or error is returned.
  StatusOr<ServeResult> RunNow(const ServeRequest& request, ResponseSink* sink = nullptr);

  void Start();
  // Queues a request. RESOURCE_EXHAUSTED (with the queue size) when full, UNAVAILABLE when stopped.
  Status Submit(std::shared_ptr<const ServeRequest> request, std::shared_ptr<ResponseSink> sink,
                std::shared_ptr<std::atomic<bool>> cancelled);
  // Ends the running request at its next step boundary and every queued one, each with
  // OnError(UNAVAILABLE) on the engine thread, then joins it. Idempotent.
  void Stop();

  size_t queued() const;
  EngineStats stats() const;
  // The retry hint for a request refused now (see RetryAfterMs).
  int64_t SuggestRetryAfterMs() const;
  const EngineModelInfo& info() const { return info_; }
  int64_t max_context_tokens() const { return max_context_; }

 private:
  ServeEngine(std::unique_ptr<ModelDir> model, std::unique_ptr<ModelRunner> runner,
              EngineOptions options, Gemma3Processor processor);
  struct Job {
    std::shared_ptr<const ServeRequest> request;
    std::shared_ptr<ResponseSink> sink;
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  void Loop();
  // The whole pipeline for one request; deltas go to `sink` when given.
  StatusOr<ServeResult> Run(const ServeRequest& r, ResponseSink* sink,
                            const std::atomic<bool>* cancelled);
  // OK, or why the request must end now (stop, deadline, cancel — in that order).
  Status CheckContinue(const ServeRequest& r, const std::atomic<bool>* cancelled) const;
  // One row through the runner: pages for it first, sliding pages behind the window after.
  StatusOr<StepOutput> RunStep(StepRow& row, SequenceId seq);
  void PublishKvCounters();

  std::unique_ptr<ModelDir> model_;  // outlives the runner and the processor, which refer to it
  std::unique_ptr<ModelRunner> runner_;
  KvManager kv_;  // the engine thread's (and RunNow's) only
  EngineOptions options_;
  int64_t max_context_;
  Gemma3Processor processor_;
  EngineModelInfo info_;
  SequenceId next_sequence_ = 1;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;              // guarded by mu_
  uint64_t queued_bytes_ = 0;          // guarded by mu_
  bool running_ = false;               // guarded by mu_: the thread exists
  bool busy_ = false;                  // guarded by mu_: a request is being worked on
  EngineStats counters_;               // guarded by mu_ (queued/running filled on read)
  std::atomic<bool> stopping_{false};  // read between steps without the lock
  std::thread thread_;
};

}  // namespace vlmserve
