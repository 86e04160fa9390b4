// The serving loop (see serve_engine.h).
#include "engine/serve_engine.h"

#include <algorithm>
#include <exception>
#include <filesystem>

#include "model/runner_factory.h"
#include "model/text/tokenizer.h"
#include "model/weights/model_stats.h"

namespace vlmserve {
namespace {

int64_t MicrosSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

// Frees a sequence's pages, and its encoded images, however the request ends.
struct SequenceGuard {
  KvManager& kv;
  ModelRunner& runner;
  SequenceId id;
  ImageHandle images = 0;
  ~SequenceGuard() {
    kv.Free(id);
    if (images) runner.ReleaseImages(images);
  }
};

}  // namespace

StatusOr<std::unique_ptr<ServeEngine>> ServeEngine::Load(const std::string& model_dir,
                                                         const std::string& device,
                                                         EngineOptions options) {
  ASSIGN_OR_RETURN(ModelDir loaded, ModelDir::Load(model_dir));
  auto model = std::make_unique<ModelDir>(std::move(loaded));
  RunnerOptions ro;
  ro.kv_cache_tokens = options.kv_cache_tokens;
  ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, CreateModelRunner(*model, device, ro));
  return Create(std::move(model), std::move(runner), std::move(options));
}

StatusOr<std::unique_ptr<ServeEngine>> ServeEngine::Create(std::unique_ptr<ModelDir> model,
                                                           std::unique_ptr<ModelRunner> runner,
                                                           EngineOptions options) {
  if (!model || !runner) return InvalidArgumentError("an engine needs a model and a runner");
  ASSIGN_OR_RETURN(Gemma3Processor processor,
                   Gemma3Processor::Create(*model->tokenizer, model->config,
                                           {options.image_limits, options.prompt_limits}));
  return std::unique_ptr<ServeEngine>(new ServeEngine(std::move(model), std::move(runner),
                                                      std::move(options), std::move(processor)));
}

ServeEngine::ServeEngine(std::unique_ptr<ModelDir> model, std::unique_ptr<ModelRunner> runner,
                         EngineOptions options, Gemma3Processor processor)
    : model_(std::move(model)),
      runner_(std::move(runner)),
      kv_(runner_->kv_pages(), model_->config.text.sliding_window,
          model_->config.text.NumLayersOfType(LayerType::kFullAttention) > 0,
          model_->config.text.NumLayersOfType(LayerType::kSlidingAttention) > 0),
      options_(std::move(options)),
      max_context_(std::min(
          options_.max_context_tokens > 0
              ? std::min(options_.max_context_tokens, model_->config.text.max_position_embeddings)
              : model_->config.text.max_position_embeddings,
          kv_.max_tokens_per_sequence())),
      processor_(std::move(processor)) {
  counters_.kv = kv_.counters();
  const Gemma3Config& c = model_->config;
  info_.model_type = c.model_type;
  info_.architecture = c.architecture;
  const std::filesystem::path path = std::filesystem::path(model_->path).lexically_normal();
  info_.model_name = (path.has_filename() ? path : path.parent_path()).filename().string();
  info_.device = runner_->device();
  if (auto p = CountParameters(c); p.ok()) info_.parameters = p->total;
  info_.has_vision = c.has_vision;
  info_.image_size = c.has_vision ? c.vision.image_size : 0;
  info_.mm_tokens_per_image = c.has_vision ? c.mm_tokens_per_image : 0;
  info_.vocab_size = c.text.vocab_size;
  info_.max_context_tokens = max_context_;
}

int64_t RetryAfterMs(size_t queued, bool running, double mean_service_ms, int concurrency,
                     double fallback_ms) {
  const double per_request = mean_service_ms > 0 ? mean_service_ms : fallback_ms;
  const double ahead = static_cast<double>(queued) + (running ? 1 : 0);
  const double ms = ahead * per_request / std::max(concurrency, 1);
  return static_cast<int64_t>(std::clamp(ms, 10.0, 60000.0));
}

std::vector<std::pair<int64_t, int64_t>> PrefillChunks(std::span<const uint8_t> types,
                                                       int64_t max_chunk) {
  const int64_t n = static_cast<int64_t>(types.size());
  std::vector<std::pair<int64_t, int64_t>> chunks;
  auto soft = [&](int64_t i) { return types[static_cast<size_t>(i)] == 1; };
  for (int64_t begin = 0; begin < n;) {
    int64_t end = max_chunk > 0 ? std::min(n, begin + max_chunk) : n;
    if (end < n && soft(end) && soft(end - 1)) {  // the cut falls inside an image's run
      int64_t run_start = end - 1;
      while (run_start > begin && soft(run_start - 1)) --run_start;
      if (run_start > begin) {
        end = run_start;  // the image goes whole into the next chunk
      } else {
        while (end < n && soft(end)) ++end;  // the image starts this chunk: take all of it
      }
    }
    chunks.emplace_back(begin, end);
    begin = end;
  }
  return chunks;
}

ServeEngine::~ServeEngine() { Stop(); }

void ServeEngine::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_) return;
  running_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void ServeEngine::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  // The engine thread ends the running request at its next step and fails the queued ones itself
  // (sinks are only ever called on the engine thread).
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
}

size_t ServeEngine::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

EngineStats ServeEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = counters_;
  s.queued = queue_.size();
  s.queued_bytes = queued_bytes_;
  s.running = busy_;
  return s;
}

int64_t ServeEngine::SuggestRetryAfterMs() const {
  const EngineStats s = stats();
  return RetryAfterMs(s.queued, s.running, s.mean_service_ms);
}

Status ServeEngine::Submit(std::shared_ptr<const ServeRequest> request,
                           std::shared_ptr<ResponseSink> sink,
                           std::shared_ptr<std::atomic<bool>> cancelled) {
  const uint64_t bytes = request->HeldBytes();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_ || stopping_) return UnavailableError("the engine is not running");
    if (queue_.size() >= options_.max_queue) {
      ++counters_.rejected_full;
      return ResourceExhaustedError("the request queue is full (" +
                                    std::to_string(options_.max_queue) + " waiting); retry later");
    }
    if (!queue_.empty() && queued_bytes_ + bytes > options_.max_queued_bytes) {
      ++counters_.rejected_full;
      return ResourceExhaustedError("queued requests hold " + std::to_string(queued_bytes_) +
                                    " bytes; this one (" + std::to_string(bytes) +
                                    " bytes) would pass the limit of " +
                                    std::to_string(options_.max_queued_bytes) + "; retry later");
    }
    queued_bytes_ += bytes;
    queue_.push_back({std::move(request), std::move(sink), std::move(cancelled)});
  }
  cv_.notify_one();
  return Status::Ok();
}

Status ServeEngine::CheckContinue(const ServeRequest& r, const std::atomic<bool>* cancelled) const {
  if (stopping_.load()) return UnavailableError("the server is shutting down");
  if (std::chrono::steady_clock::now() >= r.deadline) {
    return {StatusCode::kDeadlineExceeded, "the request's deadline passed"};
  }
  if (cancelled && cancelled->load()) return {StatusCode::kCancelled, "cancelled by the client"};
  return Status::Ok();
}

void ServeEngine::Loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      job = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= job.request->HeldBytes();
      busy_ = true;
    }
    const auto started = std::chrono::steady_clock::now();
    // A request that can no longer be useful never starts (reliability.md G5).
    if (Status why = CheckContinue(*job.request, job.cancelled.get()); !why.ok()) {
      const int64_t waited_ms = MicrosSince(job.request->received) / 1000;
      std::lock_guard<std::mutex> lock(mu_);
      if (why.code() == StatusCode::kDeadlineExceeded) {
        ++counters_.expired_in_queue;
        why = Status(why.code(), "the deadline passed while the request waited in the queue (" +
                                     std::to_string(waited_ms) + " ms); it was not started");
      } else if (why.code() == StatusCode::kCancelled) {
        ++counters_.cancelled_in_queue;
        why = Status(why.code(), "cancelled before it started");
      }
      ++counters_.completed;
      busy_ = false;
      job.sink->OnError(why);
      continue;
    }
    // An exception here is a bug (or an allocation failure); it ends this request with INTERNAL
    // and never the engine thread. The runner's sequence is released by Run's guard on unwind.
    try {
      StatusOr<ServeResult> r = Run(*job.request, job.sink.get(), job.cancelled.get());
      if (r.ok())
        job.sink->OnResult(std::move(r).value());
      else
        job.sink->OnError(r.status());
    } catch (const std::exception& e) {
      job.sink->OnError(InternalError(std::string("exception in the engine: ") + e.what()));
    } catch (...) {
      job.sink->OnError(InternalError("unknown exception in the engine"));
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    PublishKvCounters();  // the request's pages are free again
    std::lock_guard<std::mutex> lock(mu_);
    // An exponential moving average over roughly the last 8 requests: recent enough to follow a
    // change of load, smooth enough that one long request does not swing the retry hint.
    counters_.mean_service_ms =
        counters_.mean_service_ms == 0 ? ms : 0.875 * counters_.mean_service_ms + 0.125 * ms;
    ++counters_.completed;
    busy_ = false;
  }
  // Stopping: the queued requests end here, on the engine thread, like every other sink call.
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dropped.swap(queue_);
    queued_bytes_ = 0;
  }
  for (Job& j : dropped) j.sink->OnError(UnavailableError("the server is shutting down"));
}

StatusOr<StepOutput> ServeEngine::RunStep(StepRow& row, SequenceId seq) {
  const int64_t end = row.start + static_cast<int64_t>(row.tokens.size());
  RETURN_IF_ERROR(kv_.Grow(seq, end));
  row.full_table = kv_.full_table(seq);
  row.sliding_table = kv_.sliding_table(seq);
  auto out = runner_->Step(std::span<const StepRow>(&row, 1));
  kv_.ReleaseBeforeWindow(seq, end);
  PublishKvCounters();
  if (!out.ok()) return out.status();
  return std::move((*out)[0]);
}

void ServeEngine::PublishKvCounters() {
  const KvCounters c = kv_.counters();
  std::lock_guard<std::mutex> lock(mu_);
  counters_.kv = c;
}

StatusOr<ServeResult> ServeEngine::RunNow(const ServeRequest& request, ResponseSink* sink) {
  auto result = Run(request, sink, nullptr);
  PublishKvCounters();  // the request's pages are free again
  return result;
}

StatusOr<ServeResult> ServeEngine::Run(const ServeRequest& r, ResponseSink* sink,
                                       const std::atomic<bool>* cancelled) {
  const auto start = std::chrono::steady_clock::now();
  ServeResult out;
  out.timings.queue_us =
      std::chrono::duration_cast<std::chrono::microseconds>(start - r.received).count();
  const Gemma3Config& cfg = model_->config;

  // 1. Frames → one image → pixel values (+ pan & scan crops); messages → ids.
  ProcessorInput in;
  in.images = &r.images;
  in.system_prompt = r.system_prompt;
  in.prompt = r.prompt;
  in.pan_and_scan = r.pan_and_scan;
  ASSIGN_OR_RETURN(ModelInputs inputs, processor_.Process(in));
  const Prompt& prompt = inputs.prompt;
  const int64_t need = static_cast<int64_t>(prompt.ids.size()) + r.max_new_tokens;
  if (need > max_context_) {
    return InvalidArgumentError("the prompt is " + std::to_string(prompt.ids.size()) +
                                " tokens; with max_new_tokens " + std::to_string(r.max_new_tokens) +
                                " that exceeds the context limit of " +
                                std::to_string(max_context_));
  }
  out.prompt_tokens = static_cast<int32_t>(prompt.ids.size());
  out.images = static_cast<int32_t>(prompt.images.size());
  out.timings.preprocess_us = MicrosSince(start);

  // 3. Vision, prefill, decode.
  RETURN_IF_ERROR(ValidateSamplingParams(r.sampling, cfg.text.vocab_size));
  RETURN_IF_ERROR(CheckContinue(r, cancelled));
  auto t = std::chrono::steady_clock::now();
  const SequenceId seq = next_sequence_++;
  SequenceGuard guard{kv_, *runner_, seq};
  if (!prompt.images.empty()) {
    ASSIGN_OR_RETURN(
        guard.images,
        runner_->EncodeImages(inputs.pixel_values, static_cast<int64_t>(prompt.images.size())));
  }
  out.timings.vision_us = MicrosSince(t);
  RETURN_IF_ERROR(CheckContinue(r, cancelled));

  // Prefill, in chunks that never split an image; the last chunk samples the first token.
  t = std::chrono::steady_clock::now();
  const int64_t n = static_cast<int64_t>(prompt.ids.size());
  std::vector<ImageRef> refs;  // the prompt's image runs, in order: image i of the batch
  for (size_t i = 0; i < prompt.images.size(); ++i) {
    refs.push_back({guard.images, static_cast<int64_t>(i)});
  }
  StepOutput sampled;
  size_t run = 0;
  for (const auto& [begin, end] :
       PrefillChunks(prompt.token_type_ids, options_.prefill_chunk_tokens)) {
    StepRow row;
    row.sequence = seq;
    row.tokens = std::span<const int32_t>(prompt.ids).subspan(begin, end - begin);
    row.token_types = std::span<const uint8_t>(prompt.token_type_ids).subspan(begin, end - begin);
    size_t runs = 0;
    for (int64_t i = begin; i < end; ++i) {
      runs += prompt.token_type_ids[static_cast<size_t>(i)] == 1 &&
              (i == begin || prompt.token_type_ids[static_cast<size_t>(i - 1)] != 1);
    }
    row.images = std::span<const ImageRef>(refs).subspan(run, runs);
    run += runs;
    row.start = begin;
    row.sample = end == n;
    row.sampling = r.sampling;
    row.draw = 0;
    ASSIGN_OR_RETURN(sampled, RunStep(row, seq));
    if (!row.sample) RETURN_IF_ERROR(CheckContinue(r, cancelled));
  }
  if (guard.images) {  // the soft tokens are in the KV cache now
    runner_->ReleaseImages(guard.images);
    guard.images = 0;
  }
  out.timings.prefill_us = MicrosSince(t);

  // Decode: one sampled token per step (the row's draw counter is the token's index).
  t = std::chrono::steady_clock::now();
  DecodeStream stream(*model_->tokenizer, /*skip_special_tokens=*/false);
  const std::vector<int32_t>& stops = model_->generation.stop_ids;
  for (int32_t step = 0; step < r.max_new_tokens; ++step) {
    if (Status why = CheckContinue(r, cancelled); !why.ok()) {
      return Status(why.code(), why.message() + " after " + std::to_string(step) + " of at most " +
                                    std::to_string(r.max_new_tokens) + " tokens");
    }
    const int32_t token = sampled.token;
    if (step == 0) out.timings.first_token_us = MicrosSince(r.received);
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
      out.finish = FinishReason::kStop;
      break;
    }
    out.tokens.push_back(token);
    std::string delta = stream.Step(token);
    out.text += delta;
    if (sink) sink->OnDelta({token}, std::move(delta));
    if (options_.test_token_delay.count() > 0)
      std::this_thread::sleep_for(options_.test_token_delay);
    if (step + 1 == r.max_new_tokens) break;
    StepRow row;
    row.sequence = seq;
    row.tokens = std::span<const int32_t>(&token, 1);
    row.start = n + step;
    row.sampling = r.sampling;
    row.draw = static_cast<uint64_t>(step) + 1;
    ASSIGN_OR_RETURN(sampled, RunStep(row, seq));
  }
  std::string tail = stream.Flush();
  if (!tail.empty()) {
    out.text += tail;
    if (sink) sink->OnDelta({}, std::move(tail));
  }
  out.timings.decode_us = MicrosSince(t);
  out.timings.total_us = MicrosSince(r.received);
  ParseActionText(out.text, &out.action);
  return out;
}

}  // namespace vlmserve
