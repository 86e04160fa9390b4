// ServeEngine: the serving loop between the transport (server/) and the model (a ModelRunner) —
// continuous batching on the runner's Step.
//
// Threading contract (engine/README.md): Submit() may be called from any thread (gRPC reactors);
// it only checks capacity (requests and bytes) and enqueues. A small worker pool prepares each
// request (the processor: frames → grid → pixels; messages → ids; context and sampling checks).
// One engine thread owns the runner, the KV manager and every sequence: each iteration it asks the
// scheduler (engine/scheduler.h, a pure function) for a plan — drops, preemptions, admissions, one
// vision batch, one Step of decode rows and prefill chunks — carries it out, and streams tokens to
// the requests' sinks. Sinks are called on the engine thread only: zero or more OnDelta, then
// exactly one OnResult or OnError. A request ends when its client cancels (CANCELLED), its
// deadline passes (DEADLINE_EXCEEDED; one still queued never starts), a newer request of its
// session asks for latest_frame_wins (CANCELLED, saying so), Stop() is called (UNAVAILABLE), or it
// finishes; its pages and images are freed at that step boundary.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "engine/grammar/action_grammar.h"
#include "engine/kv_manager.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/worker_pool.h"
#include "kernels/cpu/sample.h"
#include "model/model_dir.h"
#include "model/model_runner.h"
#include "model/processor.h"
#include "model/weights/lora_adapter.h"

namespace vlmserve {

struct EngineOptions {
  // Called once, on the engine thread, when the runner reports its device unusable
  // (ModelRunner::Health) — after every request has ended with UNAVAILABLE. The server flips
  // health to NOT_SERVING and exits for a restart (reliability.md G10). May be empty.
  std::function<void(const Status&)> on_fatal;
  // A PEFT LoRA adapter directory merged into the weights at load (model/weights/lora_adapter.h);
  // empty = none.
  std::string adapter_dir;
  ImageLimits image_limits;
  PromptLimits prompt_limits;
  size_t max_queue = 64;  // requests accepted but not yet running; more is RESOURCE_EXHAUSTED
  // Bytes (images + texts) that queued requests may hold together; a request that would pass it
  // is RESOURCE_EXHAUSTED, except into an empty queue (so any single request can run).
  uint64_t max_queued_bytes = 256u << 20;
  int64_t max_context_tokens =
      0;  // prompt + max_new_tokens; 0 = the model's max_position_embeddings
  // Tokens of KV cache the runner holds (each of its two pools); 0 = the runner's default. A
  // request must fit: the context limit is lowered to what one sequence can hold.
  int64_t kv_cache_tokens = 0;
  int64_t kv_cache_bytes = 0;        // else the cache's bytes (0 = unset)
  double gpu_memory_fraction = 0;    // else, on a GPU, this share of its memory (0 = unset)
  // Loading on a GPU: called as the weights reach the device (bytes so far, total), ~every 10 %.
  std::function<void(uint64_t done, uint64_t total)> on_load_progress;
  // Continuous batching (engine/scheduler.h).
  int64_t step_token_budget = 512;  // tokens per step; raised to hold one image and every row
  int64_t max_running = 64;         // sequences in a step at once
  int64_t max_images_per_batch = 8;
  int64_t prefill_chunk_tokens = 0;  // also cap one prefill chunk at this (0 = the budget)
  int preprocess_threads = 2;        // workers for frame decoding, preprocessing, tokenization
  bool prefix_cache = true;          // share the KV pages of common prompt prefixes
  // Action mode: append the bytes the grammar forces as tokens without sampling them
  // (engine/grammar/action_grammar.h). Off only to measure what it changes.
  bool jump_forward = true;
  GrammarRegistryOptions grammar;
  // Test hook (reliability.md "delay hooks"): sleep this long after each generated token's step,
  // so tests can hold requests in flight. Zero in production.
  std::chrono::milliseconds test_token_delay{0};
};

// What the engine is doing, for logs, retry hints, metrics and tests. A snapshot.
struct EngineStats {
  size_t queued = 0;  // accepted, not yet running (being prepared or waiting)
  uint64_t queued_bytes = 0;
  size_t running = 0;             // admitted sequences
  uint64_t completed = 0;         // requests that ended, however
  uint64_t expired_in_queue = 0;  // deadline passed before they started (they never started)
  uint64_t cancelled_in_queue = 0;
  uint64_t superseded = 0;       // ended by a newer latest_frame_wins request of their session
  uint64_t rejected_full = 0;    // RESOURCE_EXHAUSTED at Submit
  uint64_t steps = 0, rows = 0;  // runner steps and the rows they held
  uint64_t max_rows = 0;         // the most rows one step held
  uint64_t preemptions = 0;
  uint64_t generated_tokens = 0;
  uint64_t forced_tokens = 0, sampled_tokens = 0;  // generated = forced + sampled
  double mean_service_ms = 0;  // moving average of a request's time from arrival to its end
  KvCounters kv;               // pages, live sequences, prefix-cache hits
};

// Histograms the metrics endpoint exports (seconds; rows per step).
struct EngineMetrics {
  Histogram batch_rows{{1, 2, 4, 8, 16, 32, 64, 128, 256}};
  Histogram time_to_first_token{ExponentialBounds(0.005, 2, 14)};
  Histogram request_duration{ExponentialBounds(0.005, 2, 16)};
  // queue, preprocess, vision, prefill, decode.
  static constexpr const char* kPhases[5] = {"queue", "preprocess", "vision", "prefill", "decode"};
  Histogram phase[5] = {
      Histogram(ExponentialBounds(0.0005, 2, 16)), Histogram(ExponentialBounds(0.0005, 2, 16)),
      Histogram(ExponentialBounds(0.0005, 2, 16)), Histogram(ExponentialBounds(0.0005, 2, 16)),
      Histogram(ExponentialBounds(0.0005, 2, 16))};
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
  std::optional<LoraAdapterInfo> adapter;  // the merged LoRA adapter, if any
  RunnerMemory memory;                     // weights and KV cache as the runner holds them
  int64_t kv_pages = 0;                    // pages per pool
};

// How long a refused client should wait before retrying: the work ahead of it (queued + running
// requests) divided by the engine's concurrency, at the recent service time; a first guess of
// `fallback_ms` per request before any has finished. Clamped to [10 ms, 60 s]. Pure, for tests.
int64_t RetryAfterMs(size_t queued, size_t running, double mean_service_ms, int concurrency = 1,
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

  // Runs one request to its end on the calling thread, before Start() (the server's warm-up,
  // vlmserve-generate). Deltas go to `sink` when given; the result or error is returned.
  StatusOr<ServeResult> RunNow(const ServeRequest& request, ResponseSink* sink = nullptr);

  void Start();
  // Queues a request. RESOURCE_EXHAUSTED when full (by count or bytes), UNAVAILABLE when stopped.
  Status Submit(std::shared_ptr<const ServeRequest> request, std::shared_ptr<ResponseSink> sink,
                std::shared_ptr<std::atomic<bool>> cancelled);
  // Wakes the engine thread (a cancellation flag was set), so it acts before its next event.
  void Wake();
  // Ends every running request at the next step boundary and every queued one, each with
  // OnError(UNAVAILABLE) on the engine thread, then joins it. Idempotent.
  void Stop();

  size_t queued() const;
  EngineStats stats() const;
  const EngineMetrics& metrics() const { return metrics_; }
  // The retry hint for a request refused now (see RetryAfterMs).
  int64_t SuggestRetryAfterMs() const;
  const EngineModelInfo& info() const { return info_; }
  int64_t max_context_tokens() const { return max_context_; }
  const SchedulerConfig& scheduler_config() const { return sched_; }
  // The compiled action grammars and their masks (thread-safe).
  GrammarRegistry& grammars() const { return *grammars_; }
  // The grammar an action-mode request would use: INVALID_ARGUMENT for a bad schema, for
  // allowed_buttons with a custom schema, or for action options in text mode. Null in text mode.
  StatusOr<std::shared_ptr<const ActionGrammar>> GrammarFor(const ServeRequest& request) const;

 private:
  struct Seq;  // one request inside the engine (serve_engine.cc)
  struct Prepared {
    uint64_t id = 0;
    StatusOr<ModelInputs> inputs = InternalError("not prepared");
    std::shared_ptr<const ActionGrammar> grammar;  // action mode
    int64_t preprocess_us = 0;
  };

  ServeEngine(std::unique_ptr<ModelDir> model, std::unique_ptr<ModelRunner> runner,
              EngineOptions options, Gemma3Processor processor);
  void Loop();
  // Prepares a request (runs on a worker, or inline for RunNow).
  Prepared Prepare(uint64_t id, const ServeRequest& request) const;
  // Takes a prepared request into the waiting state, or ends it with its error.
  void Accept(Prepared prepared);
  // One scheduling iteration; false when there was nothing to do.
  bool Iterate();
  void Execute(const SchedulerPlan& plan);
  void RunRows(const std::vector<PlannedRow>& rows);
  void EncodeVision(const std::vector<uint64_t>& ids);
  // Ends a sequence with a result or an error; frees its pages and images.
  void Finish(uint64_t id, Status status);
  // Appends generated tokens (the one at `sampled`, if any, was sampled: `out` holds its
  // probabilities) and streams them unless `hold`.
  void Append(Seq& s, const std::vector<int32_t>& tokens, int32_t sampled, const StepOutput* out);
  void Stream(Seq& s);
  // After a row's sample: the token's way into the sequence (text or action); false when it ended.
  bool TakeSample(Seq& s, const StepOutput& out);
  void Preempt(Seq& s);
  void ReleaseImages(Seq& s);
  void Publish();  // stats for other threads

  std::unique_ptr<ModelDir> model_;  // outlives the runner and the processor, which refer to it
  std::unique_ptr<ModelRunner> runner_;
  EngineOptions options_;
  KvManager kv_;  // engine thread (or RunNow's caller) only
  int64_t max_context_;
  Gemma3Processor processor_;
  EngineModelInfo info_;
  SchedulerConfig sched_;
  EngineMetrics metrics_;
  std::unique_ptr<GrammarRegistry> grammars_;

  // Engine thread (or RunNow's caller) only.
  std::map<uint64_t, std::unique_ptr<Seq>> seqs_;
  std::map<ImageHandle, int> image_users_;
  uint64_t admissions_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  struct Incoming {
    uint64_t id;
    std::shared_ptr<const ServeRequest> request;
    std::shared_ptr<ResponseSink> sink;
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  std::deque<Incoming> incoming_;  // guarded by mu_
  std::deque<Prepared> prepared_;  // guarded by mu_
  size_t queued_ = 0;              // guarded by mu_: accepted, not yet running
  uint64_t queued_bytes_ = 0;      // guarded by mu_
  uint64_t next_id_ = 1;           // guarded by mu_
  bool running_ = false;           // guarded by mu_: the thread exists
  bool wake_ = false;              // guarded by mu_
  EngineStats published_;          // guarded by mu_
  std::atomic<bool> stopping_{false};
  // Set (once) when the runner reports its device unusable; failure_ says why (guarded by mu_).
  std::atomic<bool> failed_{false};
  Status failure_;
  // After a failed runner call: asks the runner's health and, if it is gone, marks the engine
  // failed (the loop then ends everything and calls on_fatal).
  void CheckRunnerHealth();
  // A failed runner call's status as the requests see it.
  Status RunnerError(const Status& error) const;
  std::unique_ptr<WorkerPool> workers_;
  std::thread thread_;
};

}  // namespace vlmserve
