// The serving loop: intake, preparation on workers, and one scheduling iteration after another on
// the engine thread (see serve_engine.h).
#include "engine/serve_engine.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <optional>

#include "common/thread_name.h"
#include "kernels/kv_layout.h"
#include "model/runner_factory.h"
#include "model/text/tokenizer.h"
#include "model/weights/model_stats.h"

namespace vlmserve {

using Clock = std::chrono::steady_clock;

namespace {

int64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

double Seconds(int64_t us) { return static_cast<double>(us) / 1e6; }

}  // namespace

// One request inside the engine. Created at intake; owned and touched by the engine thread only.
struct ServeEngine::Seq {
  uint64_t id = 0, arrival = 0;
  std::shared_ptr<const ServeRequest> request;
  std::shared_ptr<ResponseSink> sink;
  std::shared_ptr<std::atomic<bool>> cancelled;
  SchedSeq::State state = SchedSeq::State::kPreparing;
  uint64_t bytes = 0;  // what it counts in queued bytes until admitted

  // Prepared.
  ModelInputs inputs;
  std::vector<int32_t> tokens;  // prompt, then every generated token
  std::vector<uint8_t> types;   // 1 on soft tokens
  std::vector<std::pair<int64_t, int64_t>> image_runs;
  int64_t prefix_len = 0;  // tokens before the first image (the prefix cache's share)

  // Running.
  uint64_t admitted = 0;
  int64_t computed = 0;  // positions in the KV cache
  bool decoding = false;
  ImageHandle images = 0;
  int64_t image_base = 0;  // index of its first image in the handle's batch
  bool vision_done = false;
  bool started = false;  // admitted at least once
  bool now = false;      // run by RunNow (the warm-up): not part of the service-time mean
  std::unique_ptr<DecodeStream> stream;
  std::unique_ptr<ActionMatcher> action;  // action mode
  std::vector<TokenLogprob> logprobs;     // per generated token, when the request asked
  size_t streamed = 0;                    // generated tokens already sent to the sink
  bool sampled_any = false;               // the first sample came back (time to first token)
  ServeResult out;
  Clock::time_point admitted_at, first_token_at;
};

StatusOr<std::unique_ptr<ServeEngine>> ServeEngine::Load(const std::string& model_dir,
                                                         const std::string& device,
                                                         EngineOptions options) {
  // A LoRA adapter's merged weights are stored in the runner's dtype: rounded once.
  ASSIGN_OR_RETURN(ModelDir loaded, ModelDir::Load(model_dir, options.adapter_dir,
                                                   device == "cuda" ? DType::kBF16 : DType::kF32));
  auto model = std::make_unique<ModelDir>(std::move(loaded));
  RunnerOptions ro;
  ro.kv_cache_tokens = options.kv_cache_tokens;
  ro.kv_cache_bytes = options.kv_cache_bytes;
  ro.gpu_memory_fraction = options.gpu_memory_fraction;
  ro.on_load_progress = options.on_load_progress;
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
      options_(std::move(options)),
      kv_(runner_->kv_pages(), model_->config.text.sliding_window,
          model_->config.text.NumLayersOfType(LayerType::kFullAttention) > 0,
          model_->config.text.NumLayersOfType(LayerType::kSlidingAttention) > 0),
      max_context_(std::min(
          options_.max_context_tokens > 0
              ? std::min(options_.max_context_tokens, model_->config.text.max_position_embeddings)
              : model_->config.text.max_position_embeddings,
          kv_.max_tokens_per_sequence())),
      processor_(std::move(processor)) {
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
  info_.adapter = model_->adapter;
  info_.memory = runner_->memory();
  info_.kv_pages = std::max(runner_->kv_pages().full_pages, runner_->kv_pages().sliding_pages);

  // The budget must hold every decode row plus one whole image (or a prefill makes no progress).
  const KvPoolSizes pools = runner_->kv_pages();
  sched_.max_running = std::max<int64_t>(1, options_.max_running);
  sched_.token_budget = std::max(options_.step_token_budget,
                                 sched_.max_running + (c.has_vision ? c.mm_tokens_per_image : 1));
  if (options_.prefill_chunk_tokens > 0) {
    sched_.token_budget = std::max(std::min(sched_.token_budget, options_.prefill_chunk_tokens),
                                   c.has_vision ? c.mm_tokens_per_image : int64_t{1});
  }
  sched_.max_images_per_batch = std::max<int64_t>(1, options_.max_images_per_batch);
  sched_.full_pool_pages = c.text.NumLayersOfType(LayerType::kFullAttention) ? pools.full_pages : 0;
  sched_.sliding_pool_pages =
      c.text.NumLayersOfType(LayerType::kSlidingAttention) ? pools.sliding_pages : 0;
  sched_.sliding_window = c.text.sliding_window;
  published_.kv = kv_.counters();
  // The vocabulary trie is built once; the default schema is compiled now (its masks fill in as
  // requests reach its states).
  grammars_ =
      std::make_unique<GrammarRegistry>(*model_->tokenizer, c.text.vocab_size, options_.grammar);
  const size_t masks =
      grammars_->Get(DefaultActionSchema())->PrecomputeMasks(options_.jump_forward, 512);
  (void)masks;
}

StatusOr<std::shared_ptr<const ActionGrammar>> ServeEngine::GrammarFor(
    const ServeRequest& r) const {
  if (r.output_mode == OutputMode::kText) {
    if (!r.allowed_buttons.empty()) {
      return InvalidArgumentError("allowed_buttons needs the action output mode (not TEXT)");
    }
    if (!r.action_schema.empty()) {
      return InvalidArgumentError("action_schema needs the action output mode (not TEXT)");
    }
    return std::shared_ptr<const ActionGrammar>();
  }
  if (!r.action_schema.empty()) {
    if (!r.allowed_buttons.empty()) {
      return InvalidArgumentError(
          "allowed_buttons narrows the default action schema; it cannot be used with "
          "action_schema (put the enum in the schema instead)");
    }
    ASSIGN_OR_RETURN(ActionSchema schema, ParseActionSchema(r.action_schema));
    return grammars_->Get(schema);
  }
  if (!r.allowed_buttons.empty()) {
    ASSIGN_OR_RETURN(ActionSchema schema, NarrowButtons(r.allowed_buttons));
    return grammars_->Get(schema);
  }
  return grammars_->Get(DefaultActionSchema());
}

int64_t RetryAfterMs(size_t queued, size_t running, double mean_service_ms, int concurrency,
                     double fallback_ms) {
  const double per_request = mean_service_ms > 0 ? mean_service_ms : fallback_ms;
  const double ahead = static_cast<double>(queued) + static_cast<double>(running);
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
  workers_ = std::make_unique<WorkerPool>(options_.preprocess_threads);
  thread_ = std::thread([this] {
    SetThreadName("vlm-engine");
    Loop();
  });
}

void ServeEngine::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  workers_.reset();  // finishes the tasks in hand; their results are not read any more
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
}

void ServeEngine::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

size_t ServeEngine::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

EngineStats ServeEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = published_;
  s.queued = queued_;
  s.queued_bytes = queued_bytes_;
  return s;
}

int64_t ServeEngine::SuggestRetryAfterMs() const {
  const EngineStats s = stats();
  return RetryAfterMs(s.queued, s.running, s.mean_service_ms,
                      static_cast<int>(std::max<size_t>(1, s.running)));
}

Status ServeEngine::Submit(std::shared_ptr<const ServeRequest> request,
                           std::shared_ptr<ResponseSink> sink,
                           std::shared_ptr<std::atomic<bool>> cancelled) {
  const uint64_t bytes = request->HeldBytes();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_) {
      return UnavailableError("the model runner failed (" + failure_.message() +
                              "); the server is restarting");
    }
    if (!running_ || stopping_) return UnavailableError("the engine is not running");
    if (queued_ >= options_.max_queue) {
      ++published_.rejected_full;
      return ResourceExhaustedError("the request queue is full (" +
                                    std::to_string(options_.max_queue) + " waiting); retry later");
    }
    if (queued_ > 0 && queued_bytes_ + bytes > options_.max_queued_bytes) {
      ++published_.rejected_full;
      return ResourceExhaustedError("queued requests hold " + std::to_string(queued_bytes_) +
                                    " bytes; this one (" + std::to_string(bytes) +
                                    " bytes) would pass the limit of " +
                                    std::to_string(options_.max_queued_bytes) + "; retry later");
    }
    ++queued_;
    queued_bytes_ += bytes;
    incoming_.push_back({next_id_++, std::move(request), std::move(sink), std::move(cancelled)});
  }
  cv_.notify_all();
  return Status::Ok();
}

ServeEngine::Prepared ServeEngine::Prepare(uint64_t id, const ServeRequest& r) const {
  const auto t0 = Clock::now();
  Prepared p;
  p.id = id;
  p.inputs = [&]() -> StatusOr<ModelInputs> {
    RETURN_IF_ERROR(ValidateSamplingParams(r.sampling, model_->config.text.vocab_size));
    ProcessorInput in;
    in.images = &r.images;
    in.system_prompt = r.system_prompt;
    in.prompt = r.prompt;
    in.pan_and_scan = r.pan_and_scan;
    ASSIGN_OR_RETURN(ModelInputs inputs, processor_.Process(in));
    // The action options after the inputs: a bad image is reported before a small budget.
    ASSIGN_OR_RETURN(p.grammar, GrammarFor(r));
    if (p.grammar && p.grammar->shortest_action_tokens() > r.max_new_tokens) {
      return InvalidArgumentError("max_new_tokens " + std::to_string(r.max_new_tokens) +
                                  " cannot fit the shortest valid action (" +
                                  std::to_string(p.grammar->shortest_action_tokens()) +
                                  " tokens); raise it");
    }
    const int64_t need = static_cast<int64_t>(inputs.prompt.ids.size()) + r.max_new_tokens;
    if (need > max_context_) {
      return InvalidArgumentError(
          "the prompt is " + std::to_string(inputs.prompt.ids.size()) +
          " tokens; with max_new_tokens " + std::to_string(r.max_new_tokens) +
          " that exceeds the context limit of " + std::to_string(max_context_));
    }
    return inputs;
  }();
  p.preprocess_us = Micros(Clock::now() - t0);
  return p;
}

void ServeEngine::Accept(Prepared p) {
  auto it = seqs_.find(p.id);
  if (it == seqs_.end()) return;  // already dropped while it was prepared
  Seq& s = *it->second;
  s.out.timings.preprocess_us = p.preprocess_us;
  if (!p.inputs.ok()) {
    Finish(s.id, p.inputs.status());
    return;
  }
  s.inputs = std::move(p.inputs).value();
  const Prompt& prompt = s.inputs.prompt;
  s.tokens = prompt.ids;
  s.types = prompt.token_type_ids;
  for (const ImageSoftTokens& img : prompt.images) {
    s.image_runs.emplace_back(static_cast<int64_t>(img.first),
                              static_cast<int64_t>(img.first + img.count));
  }
  s.prefix_len =
      s.image_runs.empty() ? static_cast<int64_t>(s.tokens.size()) : s.image_runs.front().first;
  s.out.prompt_tokens = static_cast<int32_t>(prompt.ids.size());
  s.out.images = static_cast<int32_t>(prompt.images.size());
  s.stream = std::make_unique<DecodeStream>(*model_->tokenizer, /*skip_special_tokens=*/false);
  s.state = SchedSeq::State::kWaiting;
  if (p.grammar) {
    // The bytes forced before any choice (`{"button": "`) join the prompt's prefill; they are
    // streamed with the first sampled token.
    s.action = std::make_unique<ActionMatcher>(p.grammar, options_.jump_forward);
    const ActionAppend begin = s.action->Begin(s.request->max_new_tokens);
    Append(s, begin.tokens, -1, nullptr);
    if (begin.complete) {  // a schema with nothing to choose
      s.out.finish = FinishReason::kStop;
      Finish(s.id, Status::Ok());
    }
  }
}

void ServeEngine::Append(Seq& s, const std::vector<int32_t>& tokens, int32_t sampled,
                         const StepOutput* out) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    s.out.tokens.push_back(tokens[i]);
    s.tokens.push_back(tokens[i]);
    s.types.push_back(0);
    if (s.request->logprobs > 0) {
      TokenLogprob lp;
      if (out && static_cast<int32_t>(i) == sampled) {
        lp.logprob = out->logprob;
        lp.top = out->top_logprobs;
      } else {
        lp.forced = true;
      }
      s.logprobs.push_back(std::move(lp));
    }
  }
  const auto forced = static_cast<uint64_t>(tokens.size()) - (sampled >= 0 ? 1 : 0);
  s.out.forced_tokens += static_cast<int32_t>(forced);
  s.out.sampled_tokens += sampled >= 0 ? 1 : 0;
  if (!s.now) {  // the warm-up is no one's request: not in the metrics
    std::lock_guard<std::mutex> lock(mu_);
    published_.generated_tokens += tokens.size();
    published_.forced_tokens += forced;
    published_.sampled_tokens += sampled >= 0 ? 1 : 0;
  }
}

void ServeEngine::Stream(Seq& s) {
  if (s.streamed == s.out.tokens.size()) return;
  OutputDelta d;
  for (size_t i = s.streamed; i < s.out.tokens.size(); ++i) {
    d.ids.push_back(s.out.tokens[i]);
    d.text += s.stream->Step(s.out.tokens[i]);
    if (s.request->logprobs > 0) d.logprobs.push_back(s.logprobs[i]);
  }
  s.streamed = s.out.tokens.size();
  s.out.text += d.text;
  s.sink->OnDelta(std::move(d));
}

bool ServeEngine::TakeSample(Seq& s, const StepOutput& out) {
  const int32_t token = out.token;
  const int32_t left = s.request->max_new_tokens - static_cast<int32_t>(s.out.tokens.size());
  if (s.action) {
    auto plan = s.action->OnSample(token, out.logprob, left);
    if (!plan.ok()) {
      Finish(s.id, plan.status());
      return false;
    }
    Append(s, plan->tokens, plan->sampled, &out);
    Stream(s);
    if (plan->complete) {
      s.out.finish = FinishReason::kStop;
      Finish(s.id, Status::Ok());
      return false;
    }
  } else {
    const std::vector<int32_t>& stops = model_->generation.stop_ids;
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
      s.out.finish = FinishReason::kStop;
      Finish(s.id, Status::Ok());
      return false;
    }
    Append(s, {token}, 0, &out);
    Stream(s);
  }
  if (static_cast<int32_t>(s.out.tokens.size()) >= s.request->max_new_tokens) {
    s.out.finish = FinishReason::kLength;
    Finish(s.id, Status::Ok());
    return false;
  }
  return true;
}

void ServeEngine::Loop() {
  for (;;) {
    std::deque<Incoming> incoming;
    std::deque<Prepared> prepared;
    {
      std::unique_lock<std::mutex> lock(mu_);
      incoming.swap(incoming_);
      prepared.swap(prepared_);
      wake_ = false;
    }
    if (stopping_ || failed_) {
      // Back into the queue: the end of the loop answers them.
      std::lock_guard<std::mutex> lock(mu_);
      for (Incoming& in : incoming) incoming_.push_back(std::move(in));
      break;
    }
    for (Incoming& in : incoming) {
      auto s = std::make_unique<Seq>();
      s->id = in.id;
      s->arrival = in.id;
      s->request = in.request;
      s->sink = std::move(in.sink);
      s->cancelled = std::move(in.cancelled);
      s->bytes = in.request->HeldBytes();
      seqs_.emplace(in.id, std::move(s));
      // Preparation on a worker; the result comes back through prepared_.
      workers_->Post([this, id = in.id, request = in.request] {
        Prepared p = Prepare(id, *request);
        {
          std::lock_guard<std::mutex> lock(mu_);
          prepared_.push_back(std::move(p));
        }
        cv_.notify_all();
      });
    }
    for (Prepared& p : prepared) Accept(std::move(p));
    bool worked = false;
    try {
      worked = Iterate();
    } catch (const std::exception& e) {
      // A bug (or an allocation failure) ends the running requests with INTERNAL, never the
      // engine thread.
      std::vector<uint64_t> ids;
      for (const auto& [id, s] : seqs_) {
        if (s->state == SchedSeq::State::kRunning) ids.push_back(id);
      }
      for (uint64_t id : ids) {
        Finish(id, InternalError(std::string("exception in the engine: ") + e.what()));
      }
      worked = true;
    }
    Publish();
    if (failed_) continue;  // ends the loop at the top, with every request answered
    if (worked) continue;
    // Nothing to do: sleep until something arrives, a worker finishes, a cancel wakes us, or the
    // nearest deadline passes.
    Clock::time_point until = Clock::now() + std::chrono::seconds(1);
    for (const auto& [id, s] : seqs_) until = std::min(until, s->request->deadline);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, until, [this] {
      return stopping_ || wake_ || !incoming_.empty() || !prepared_.empty();
    });
  }
  // Stopping (or the runner failed): every request still here ends now, on the engine thread.
  std::deque<Incoming> incoming;
  Status failure;
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming.swap(incoming_);
    failure = failure_;
  }
  const std::string why =
      failed_ ? "the model runner failed (" + failure.message() + "); the server is restarting"
              : std::string("the server is shutting down");
  for (Incoming& in : incoming) in.sink->OnError(UnavailableError(why));
  std::vector<uint64_t> ids;
  for (const auto& [id, s] : seqs_) ids.push_back(id);
  for (uint64_t id : ids) {
    const Seq& s = *seqs_.at(id);
    Finish(id,
           UnavailableError(s.started ? why + " after " + std::to_string(s.out.tokens.size()) +
                                            " of at most " +
                                            std::to_string(s.request->max_new_tokens) + " tokens"
                                      : why));
  }
  Publish();
  if (failed_ && options_.on_fatal) options_.on_fatal(failure);
}

Status ServeEngine::RunnerError(const Status& error) const {
  // A call that failed because the device is gone: UNAVAILABLE (retry elsewhere), not the raw
  // INTERNAL of the call.
  if (!failed_) return error;
  return UnavailableError("the model runner failed (" + error.message() +
                          "); the server is restarting");
}

void ServeEngine::CheckRunnerHealth() {
  Status health = runner_->Health();
  if (health.ok() || failed_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failure_ = std::move(health);
  }
  cv_.notify_all();
}

bool ServeEngine::Iterate() {
  SchedulerInput in;
  in.config = sched_;
  in.free_full_pages = kv_.available_full_pages();
  in.free_sliding_pages = kv_.available_sliding_pages();
  const auto now = Clock::now();
  for (const auto& [id, sp] : seqs_) {
    const Seq& s = *sp;
    SchedSeq v;
    v.id = id;
    v.arrival = s.arrival;
    v.state = s.state;
    v.cancelled = s.cancelled && s.cancelled->load();
    // A cancel just before the deadline is the deadline: the client's timer fires first.
    v.expired = now >= s.request->deadline ||
                (v.cancelled && now + std::chrono::milliseconds(20) >= s.request->deadline);
    // Sessions are per client: "client \x1f session".
    v.session = s.request->session_id.empty() ? std::string()
                                              : s.request->client + '\x1f' + s.request->session_id;
    v.latest_frame_wins = s.request->latest_frame_wins;
    v.admitted = s.admitted;
    v.decoding = s.decoding;
    v.computed = s.computed;
    v.total = static_cast<int64_t>(s.tokens.size());
    v.image_runs = s.image_runs;
    v.images = static_cast<int64_t>(s.image_runs.size());
    v.vision_done = s.vision_done;
    v.full_table_pages = static_cast<int64_t>(kv_.full_table(id).size());
    v.sliding_table_pages = static_cast<int64_t>(kv_.sliding_table(id).size());
    v.sliding_live_pages = kv_.live_sliding_pages(id);
    if (s.state == SchedSeq::State::kWaiting && options_.prefix_cache) {
      v.prefix_pages = kv_.CachedPrefixPages(s.tokens, s.prefix_len);
    }
    in.seqs.push_back(std::move(v));
  }
  const SchedulerPlan plan = Schedule(in);
  if (plan.idle()) return false;
  Execute(plan);
  return true;
}

void ServeEngine::Execute(const SchedulerPlan& plan) {
  for (const Drop& d : plan.drop) {
    Seq& s = *seqs_.at(d.id);
    const bool started = s.state == SchedSeq::State::kRunning || s.started;
    const int64_t waited_ms = Micros(Clock::now() - s.request->received) / 1000;
    const std::string progress = " after " + std::to_string(s.out.tokens.size()) + " of at most " +
                                 std::to_string(s.request->max_new_tokens) + " tokens";
    Status why;
    switch (d.why) {
      case Drop::Why::kCancelled:
        why = {StatusCode::kCancelled,
               started ? "cancelled by the client" + progress : "cancelled before it started"};
        if (!started) {
          std::lock_guard<std::mutex> lock(mu_);
          ++published_.cancelled_in_queue;
        }
        break;
      case Drop::Why::kExpired:
        if (started) {
          why = {StatusCode::kDeadlineExceeded, "the request's deadline passed" + progress};
        } else {
          why = {StatusCode::kDeadlineExceeded,
                 "the deadline passed while the request waited in the queue (" +
                     std::to_string(waited_ms) + " ms); it was not started"};
          std::lock_guard<std::mutex> lock(mu_);
          ++published_.expired_in_queue;
        }
        break;
      case Drop::Why::kSuperseded: {
        const Seq& by = *seqs_.at(d.by);
        why = {StatusCode::kCancelled, "superseded by the newer request " + by.request->request_id +
                                           " of session " + by.request->session_id +
                                           " (latest_frame_wins)"};
        std::lock_guard<std::mutex> lock(mu_);
        ++published_.superseded;
        break;
      }
    }
    Finish(d.id, why);
  }
  for (uint64_t id : plan.preempt) Preempt(*seqs_.at(id));
  for (uint64_t id : plan.admit) {
    Seq& s = *seqs_.at(id);
    s.state = SchedSeq::State::kRunning;
    s.admitted = ++admissions_;
    if (!s.started) {
      s.started = true;
      s.admitted_at = Clock::now();
      s.out.timings.queue_us = Micros(s.admitted_at - s.request->received);
    }
    if (options_.prefix_cache) s.computed = kv_.AdoptPrefix(id, s.tokens, s.prefix_len);
    std::lock_guard<std::mutex> lock(mu_);
    --queued_;
    queued_bytes_ -= s.bytes;
  }
  if (!plan.vision.empty()) EncodeVision(plan.vision);
  if (!plan.rows.empty()) RunRows(plan.rows);
}

void ServeEngine::EncodeVision(const std::vector<uint64_t>& ids) {
  const auto t0 = Clock::now();
  std::vector<float> pixels;
  int64_t n = 0;
  for (uint64_t id : ids) {
    Seq& s = *seqs_.at(id);
    s.image_base = n;
    pixels.insert(pixels.end(), s.inputs.pixel_values.begin(), s.inputs.pixel_values.end());
    n += static_cast<int64_t>(s.image_runs.size());
  }
  auto handle = runner_->EncodeImages(pixels, n);
  const int64_t us = Micros(Clock::now() - t0);
  if (!handle.ok()) {
    CheckRunnerHealth();
    const Status why = RunnerError(handle.status());
    for (uint64_t id : ids) Finish(id, why);
    return;
  }
  image_users_[*handle] = static_cast<int>(ids.size());
  // A runner that only queues the batch (CUDA: a second stream) reports its device time once it
  // has run (RunRows); the call's own time is the vision time otherwise.
  const bool async = runner_->EncodesAsync();
  for (uint64_t id : ids) {
    Seq& s = *seqs_.at(id);
    s.images = *handle;
    s.vision_done = true;
    if (!async) s.out.timings.vision_us += us;
  }
}

void ServeEngine::ReleaseImages(Seq& s) {
  if (!s.images) return;
  if (--image_users_[s.images] == 0) {
    image_users_.erase(s.images);
    runner_->ReleaseImages(s.images);
  }
  s.images = 0;
}

void ServeEngine::Preempt(Seq& s) {
  kv_.Free(s.id);
  ReleaseImages(s);
  s.computed = 0;
  s.decoding = false;
  s.vision_done = false;
  s.state = SchedSeq::State::kWaiting;
  std::lock_guard<std::mutex> lock(mu_);
  ++published_.preemptions;
  ++queued_;
  queued_bytes_ += s.bytes;
}

void ServeEngine::RunRows(const std::vector<PlannedRow>& planned) {
  struct Live {
    Seq* seq;
    int64_t begin, end;
    std::vector<ImageRef> refs;
  };
  std::vector<Live> live;
  std::vector<uint64_t> failed;
  for (const PlannedRow& r : planned) {
    auto it = seqs_.find(r.id);
    if (it == seqs_.end()) continue;
    Seq& s = *it->second;
    // A sequence admitted in this step may have started further on, from the prefix cache: its
    // row waits for the next plan.
    if (s.state != SchedSeq::State::kRunning || s.computed != r.begin) continue;
    if (Status grown = kv_.Grow(s.id, r.end); !grown.ok()) {
      Preempt(s);  // the pool ran short after all: recompute it later
      continue;
    }
    Live l{&s, r.begin, r.end, {}};
    int64_t run = 0;
    for (const auto& [b, e] : s.image_runs) {
      if (b >= r.begin && e <= r.end) l.refs.push_back({s.images, s.image_base + run});
      ++run;
    }
    live.push_back(std::move(l));
  }
  if (live.empty()) return;
  std::vector<StepRow> rows;
  rows.reserve(live.size());
  for (const Live& l : live) {
    Seq& s = *l.seq;
    StepRow row;
    row.sequence = s.id;
    row.tokens = std::span<const int32_t>(s.tokens).subspan(l.begin, l.end - l.begin);
    row.token_types = std::span<const uint8_t>(s.types).subspan(l.begin, l.end - l.begin);
    row.images = l.refs;
    row.start = l.begin;
    row.full_table = kv_.full_table(s.id);
    row.sliding_table = kv_.sliding_table(s.id);
    row.sample = l.end == static_cast<int64_t>(s.tokens.size());
    row.sampling = s.request->sampling;
    row.draw = s.out.tokens.size();  // the index of the token this sample produces
    if (row.sample) {
      if (s.action) row.allowed = s.action->mask();
      row.top_logprobs = s.request->logprobs;
    }
    rows.push_back(row);
  }
  const auto t0 = Clock::now();
  auto outputs = runner_->Step(rows);
  const int64_t step_us = Micros(Clock::now() - t0);
  metrics_.batch_rows.Observe(static_cast<double>(rows.size()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++published_.steps;
    published_.rows += rows.size();
    published_.max_rows = std::max<uint64_t>(published_.max_rows, rows.size());
  }
  if (!outputs.ok()) {
    CheckRunnerHealth();
    const Status why = RunnerError(outputs.status());
    for (const Live& l : live) Finish(l.seq->id, why);
    return;
  }
  bool any_token = false;
  for (size_t i = 0; i < live.size(); ++i) {
    Seq& s = *live[i].seq;
    kv_.ReleaseBeforeWindow(s.id, live[i].end);
    s.computed = live[i].end;
    if (options_.prefix_cache && live[i].begin < s.prefix_len) {
      kv_.PublishPrefix(s.id, s.tokens, s.prefix_len, s.computed);
    }
    // Its images are in the KV cache once the last image run is computed.
    if (s.images && (s.image_runs.empty() || s.computed >= s.image_runs.back().second)) {
      if (runner_->EncodesAsync()) {
        const int64_t device_us = runner_->ImagesDeviceMicros(s.images);
        if (device_us >= 0) s.out.timings.vision_us += device_us;
      }
      ReleaseImages(s);
    }
    if (!rows[i].sample) continue;
    if (!s.sampled_any) {
      s.sampled_any = true;
      s.first_token_at = Clock::now();
      s.out.timings.first_token_us = Micros(s.first_token_at - s.request->received);
      s.out.timings.prefill_us = Micros(s.first_token_at - s.admitted_at) - s.out.timings.vision_us;
    }
    any_token = true;
    if (TakeSample(s, (*outputs)[i])) s.decoding = true;
  }
  (void)step_us;
  if (any_token && options_.test_token_delay.count() > 0) {
    std::this_thread::sleep_for(options_.test_token_delay);
  }
}

void ServeEngine::Finish(uint64_t id, Status status) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  std::unique_ptr<Seq> owned = std::move(it->second);
  seqs_.erase(it);
  Seq& s = *owned;
  kv_.Free(id);
  ReleaseImages(s);
  if (s.state != SchedSeq::State::kRunning) {  // it still counted as queued
    std::lock_guard<std::mutex> lock(mu_);
    --queued_;
    queued_bytes_ -= s.bytes;
  }
  const auto now = Clock::now();
  if (status.ok()) {
    Stream(s);
    std::string tail = s.stream->Flush();
    if (!tail.empty()) {
      s.out.text += tail;
      OutputDelta d;
      d.text = std::move(tail);
      s.sink->OnDelta(std::move(d));
    }
    if (s.sampled_any) s.out.timings.decode_us = Micros(now - s.first_token_at);
    s.out.timings.total_us = Micros(now - s.request->received);
    if (s.action) {
      const auto& props = s.action->grammar().schema().properties;
      ParsedAction& a = s.out.action;
      for (size_t i = 0; i < props.size(); ++i) {
        const std::string& v = s.action->values()[i];
        a.fields[props[i].name] = v;
        if (props[i].name == "button") a.button = v;
        if (props[i].name == "reasoning") a.reasoning = v;
        if (props[i].name == "context") a.context = v;
      }
      a.confidence = s.action->confidence();
      a.logprob = s.action->logprob();
    }
    const ServeTimings& t = s.out.timings;
    if (!s.now) {
      metrics_.request_duration.Observe(Seconds(t.total_us));
      if (t.first_token_us > 0) metrics_.time_to_first_token.Observe(Seconds(t.first_token_us));
      const int64_t phases[5] = {t.queue_us, t.preprocess_us, t.vision_us, t.prefill_us,
                                 t.decode_us};
      for (int i = 0; i < 5; ++i) metrics_.phase[i].Observe(Seconds(phases[i]));
    }
    s.sink->OnResult(std::move(s.out));
  } else {
    s.sink->OnError(std::move(status));
  }
  const double ms = std::chrono::duration<double, std::milli>(now - s.request->received).count();
  std::lock_guard<std::mutex> lock(mu_);
  ++published_.completed;
  if (s.started && !s.now) {
    // An exponential moving average over roughly the last 8 requests: recent enough to follow a
    // change of load, smooth enough that one long request does not swing the retry hint.
    published_.mean_service_ms =
        published_.mean_service_ms == 0 ? ms : 0.875 * published_.mean_service_ms + 0.125 * ms;
  }
}

void ServeEngine::Publish() {
  size_t running = 0;
  for (const auto& [id, s] : seqs_) running += s->state == SchedSeq::State::kRunning;
  const KvCounters kv = kv_.counters();
  std::lock_guard<std::mutex> lock(mu_);
  published_.running = running;
  published_.kv = kv;
}

StatusOr<ServeResult> ServeEngine::RunNow(const ServeRequest& request, ResponseSink* sink) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_) return Status(StatusCode::kFailedPrecondition, "RunNow is for before Start()");
  }
  // Collects the outcome and forwards the deltas.
  struct Collect : ResponseSink {
    ResponseSink* forward = nullptr;
    std::optional<StatusOr<ServeResult>> outcome;
    void OnDelta(OutputDelta d) override {
      if (forward) forward->OnDelta(std::move(d));
    }
    void OnResult(ServeResult r) override { outcome = std::move(r); }
    void OnError(Status s) override { outcome = StatusOr<ServeResult>(std::move(s)); }
  };
  auto collect = std::make_shared<Collect>();
  collect->forward = sink;
  auto req = std::make_shared<const ServeRequest>(request);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    ++queued_;
    queued_bytes_ += req->HeldBytes();
  }
  auto s = std::make_unique<Seq>();
  s->id = id;
  s->arrival = id;
  s->request = req;
  s->sink = collect;
  s->bytes = req->HeldBytes();
  s->now = true;
  seqs_.emplace(id, std::move(s));
  Accept(Prepare(id, *req));
  while (!collect->outcome) {
    if (!Iterate()) {  // nothing can happen any more: a bug
      Finish(id, InternalError("the engine made no progress on the request"));
    }
  }
  Publish();
  return std::move(*collect->outcome);
}

}  // namespace vlmserve
