// The serving loop (see serve_engine.h).
#include "engine/serve_engine.h"

#include <algorithm>
#include <exception>

#include "model/preprocess.h"
#include "model/tokenizer.h"

namespace vlmserve {
namespace {

int64_t MicrosSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

StatusOr<RgbImage> DecodeFrame(const FrameInput& f, const ImageLimits& lim,
                               const std::string& what) {
  const auto* p = reinterpret_cast<const uint8_t*>(f.bytes.data());
  if (f.raw) return RawRgbImage(f.width, f.height, {p, f.bytes.size()}, lim, what);
  return DecodeImage({p, f.bytes.size()}, lim, what);
}

// Releases the runner's sequence however the request ends.
struct SequenceGuard {
  ModelRunner& runner;
  SequenceId id;
  bool active = false;
  ~SequenceGuard() {
    if (active) runner.Release(id);
  }
};

}  // namespace

StatusOr<std::unique_ptr<ServeEngine>> ServeEngine::Create(const ModelDir& model,
                                                           std::unique_ptr<ModelRunner> runner,
                                                           EngineOptions options) {
  ASSIGN_OR_RETURN(PromptBuilder builder,
                   PromptBuilder::Create(*model.tokenizer, model.config.mm_tokens_per_image,
                                         options.prompt_limits));
  return std::unique_ptr<ServeEngine>(
      new ServeEngine(model, std::move(runner), std::move(options), std::move(builder)));
}

ServeEngine::ServeEngine(const ModelDir& model, std::unique_ptr<ModelRunner> runner,
                         EngineOptions options, PromptBuilder builder)
    : model_(model),
      runner_(std::move(runner)),
      options_(std::move(options)),
      max_context_(
          options_.max_context_tokens > 0
              ? std::min(options_.max_context_tokens, model.config.text.max_position_embeddings)
              : model.config.text.max_position_embeddings),
      builder_(std::move(builder)) {}

ServeEngine::~ServeEngine() { Stop(); }

void ServeEngine::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_) return;
  running_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void ServeEngine::Stop() {
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return;
    stopping_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (Job& j : dropped) j.sink->OnError(UnavailableError("the server is shutting down"));
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
}

size_t ServeEngine::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

Status ServeEngine::Submit(std::shared_ptr<const ServeRequest> request,
                           std::shared_ptr<ResponseSink> sink,
                           std::shared_ptr<std::atomic<bool>> cancelled) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_ || stopping_) return UnavailableError("the engine is not running");
    if (queue_.size() >= options_.max_queue) {
      return ResourceExhaustedError("the request queue is full (" +
                                    std::to_string(options_.max_queue) + " waiting); retry later");
    }
    queue_.push_back({std::move(request), std::move(sink), std::move(cancelled)});
  }
  cv_.notify_one();
  return Status::Ok();
}

void ServeEngine::Loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job.cancelled && job.cancelled->load()) {
      job.sink->OnError({StatusCode::kCancelled, "cancelled before it started"});
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
  }
}

StatusOr<ServeResult> ServeEngine::RunNow(const ServeRequest& request) {
  return Run(request, nullptr, nullptr);
}

StatusOr<ServeResult> ServeEngine::Run(const ServeRequest& r, ResponseSink* sink,
                                       const std::atomic<bool>* cancelled) {
  const auto start = std::chrono::steady_clock::now();
  ServeResult out;
  out.timings.queue_us =
      std::chrono::duration_cast<std::chrono::microseconds>(start - r.received).count();
  const Gemma3Config& cfg = model_.config;

  // 1. Frames → one image → pixel values (+ pan & scan crops).
  std::vector<float> pixels;
  int num_crops = 0;
  const bool has_image = !r.frames.empty() || r.grid.has_value();
  if (has_image) {
    if (!cfg.has_vision) return InvalidArgumentError("this model is text-only: send no frames");
    RgbImage source;
    if (r.grid) {
      ASSIGN_OR_RETURN(source, DecodeFrame(*r.grid, options_.image_limits, "grid"));
    } else {
      std::vector<RgbImage> frames;
      for (size_t i = 0; i < r.frames.size(); ++i) {
        ASSIGN_OR_RETURN(RgbImage f, DecodeFrame(r.frames[i], options_.image_limits,
                                                 "frames[" + std::to_string(i) + "]"));
        frames.push_back(std::move(f));
      }
      ASSIGN_OR_RETURN(source, ComposeGrid(frames));
    }
    PreprocessOptions po;
    po.size = static_cast<uint32_t>(cfg.vision.image_size);
    po.pan_and_scan = r.pan_and_scan;
    ASSIGN_OR_RETURN(PixelValues pv, PreprocessImage(source, po));
    pixels = std::move(pv.values);
    num_crops = pv.num_crops;
  }

  // 2. The prompt.
  std::vector<PromptMessage> messages;
  if (!r.system_prompt.empty())
    messages.push_back({Role::kSystem, {PromptPart::Text(r.system_prompt)}});
  PromptMessage user{Role::kUser, {}};
  if (has_image) user.parts.push_back(PromptPart::Image(num_crops));
  user.parts.push_back(PromptPart::Text(r.prompt));
  messages.push_back(std::move(user));
  ASSIGN_OR_RETURN(Prompt prompt, builder_.Build(messages));
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
  auto t = std::chrono::steady_clock::now();
  std::vector<float> soft;
  if (!prompt.images.empty()) {
    ASSIGN_OR_RETURN(soft,
                     runner_->EncodeImages(pixels, static_cast<int64_t>(prompt.images.size())));
  }
  out.timings.vision_us = MicrosSince(t);
  t = std::chrono::steady_clock::now();
  const SequenceId seq = next_sequence_++;
  PrefillRequest pre{seq, prompt.ids, prompt.token_type_ids, soft, false};
  ASSIGN_OR_RETURN(auto logits, runner_->Prefill(std::span<const PrefillRequest>(&pre, 1)));
  SequenceGuard guard{*runner_, seq, true};
  out.timings.prefill_us = MicrosSince(t);

  t = std::chrono::steady_clock::now();
  Sampler sampler(r.sampling);
  DecodeStream stream(*model_.tokenizer, /*skip_special_tokens=*/false);
  const std::vector<int32_t>& stops = model_.generation.stop_ids;
  for (int32_t step = 0; step < r.max_new_tokens; ++step) {
    if (cancelled && cancelled->load())
      return Status(StatusCode::kCancelled, "cancelled by the client");
    const int32_t token = sampler.Sample(logits[0]);
    if (step == 0) out.timings.first_token_us = MicrosSince(r.received);
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
      out.finish = FinishReason::kStop;
      break;
    }
    out.tokens.push_back(token);
    std::string delta = stream.Step(token);
    out.text += delta;
    if (sink) sink->OnDelta({token}, std::move(delta));
    if (step + 1 == r.max_new_tokens) break;
    const std::pair<SequenceId, int32_t> next{seq, token};
    ASSIGN_OR_RETURN(logits,
                     runner_->Decode(std::span<const std::pair<SequenceId, int32_t>>(&next, 1)));
  }
  std::string tail = stream.Flush();
  if (!tail.empty()) {
    out.text += tail;
    if (sink) sink->OnDelta({}, std::move(tail));
  }
  out.timings.decode_us = MicrosSince(t);
  out.timings.total_us = MicrosSince(r.received);
  return out;
}

}  // namespace vlmserve
