// The Predict reactor, GetModelInfo and the write watchdog (see service.h).
#include "server/service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "common/text_safety.h"
#include "server/request_parse.h"
#include "server/status_map.h"

namespace vlmserve {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kDeadlineSlack = std::chrono::milliseconds(20);

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

std::string TimingsString(const ServeTimings& t) {
  char buf[256];
  std::snprintf(
      buf, sizeof(buf),
      "queue=%lld;preprocess=%lld;vision=%lld;prefill=%lld;decode=%lld;first_token=%lld;total=%lld",
      static_cast<long long>(t.queue_us), static_cast<long long>(t.preprocess_us),
      static_cast<long long>(t.vision_us), static_cast<long long>(t.prefill_us),
      static_cast<long long>(t.decode_us), static_cast<long long>(t.first_token_us),
      static_cast<long long>(t.total_us));
  return buf;
}

// gRPC's deadline (system clock; max() when none) on the engine's steady clock.
Clock::time_point SteadyDeadline(std::chrono::system_clock::time_point deadline) {
  if (deadline == std::chrono::system_clock::time_point::max()) return Clock::time_point::max();
  const auto left = deadline - std::chrono::system_clock::now();
  if (left > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
}

}  // namespace

std::string ServiceCounters::Summary() const {
  std::string s;
  for (int c = 0; c < kCodes; ++c) {
    if (const uint64_t n = ended[c].load(); n > 0) {
      if (!s.empty()) s += ' ';
      s += std::string(GrpcCodeName(static_cast<grpc::StatusCode>(c))) + "=" + std::to_string(n);
    }
  }
  return s.empty() ? "none" : s;
}

class PredictReactor;

// Shared by the reactor, the engine (which holds it as the request's sink, possibly beyond the
// reactor's life) and the watchdog. Once the reactor is done, `reactor` is null and events drop.
struct VlmService::CallState : public ResponseSink {
  std::recursive_mutex mu;  // recursive: a reaction may run inline inside StartWrite or TryCancel
  PredictReactor* reactor = nullptr;
  std::atomic<int64_t> write_since_ns{0};  // when the outstanding write started; 0 = none

  void OnDelta(OutputDelta delta) override;
  void OnResult(ServeResult result) override;
  void OnError(Status status) override;
  void CancelForWriteTimeout(std::chrono::milliseconds timeout);
};

// One Predict call. Lives until OnDone; everything else reaches it through its CallState.
class PredictReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  using CallState = VlmService::CallState;

  PredictReactor(VlmService* service, grpc::CallbackServerContext* context,
                 const grpc::ByteBuffer* request)
      : service_(service),
        context_(context),
        state_(std::make_shared<CallState>()),
        cancelled_(std::make_shared<std::atomic<bool>>(false)),
        start_(Clock::now()),
        request_id_(service->NextRequestId()) {  // until the client's own id is validated
    ++service->counters_.calls;
    state_->reactor = this;
    service->Register(state_);
    peer_ = PeerHost(context->peer());
    // Who is calling comes first: a call without a valid key does no other work at all.
    grpc::Status refused;
    std::optional<std::string> who = service->Authenticate(*context, &refused);
    std::lock_guard<std::recursive_mutex> lock(state_->mu);
    if (!who) {
      FinishLocked(refused);
      return;
    }
    key_name_ = *who;
    client_ = key_name_.empty() ? peer_ : key_name_;
    if (service->limiter().enabled()) {
      int64_t retry_ms = 0;
      if (Status limited = service->limiter().Acquire(client_, &retry_ms); !limited.ok()) {
        ++service->counters_.client_limited;
        context_->AddTrailingMetadata("retry-after-ms", std::to_string(retry_ms));
        FinishLocked(ToGrpcStatus(limited, request_id_));
        return;
      }
      holds_client_slot_ = true;
    }
    grpc::Status unavailable;
    std::shared_ptr<ServingModel> model = service->Current(&unavailable);
    if (!model) {
      FinishLocked(unavailable);
      return;
    }
    // Exceptions never leave a reactor: one here (a bug, or an allocation failure) is INTERNAL
    // with the request id, and the server goes on.
    try {
      Start(request, std::move(model));
    } catch (const std::exception& e) {
      FinishLocked(ToGrpcStatus(InternalError(std::string("exception: ") + e.what()), request_id_));
    } catch (...) {
      FinishLocked(ToGrpcStatus(InternalError("unknown exception"), request_id_));
    }
  }

  // Parse, validate, convert, submit to the engine; or finish with the reason. Lock held.
  void Start(const grpc::ByteBuffer* request, std::shared_ptr<ServingModel> model) {
    v1::PredictRequest parsed;
    const Status parse = ParseRequest(*request, &parsed);
    // The bytes now live in `parsed` (and move on into the engine's request): drop gRPC's copy
    // now rather than when the call ends, so a queued request is held once, not twice.
    const_cast<grpc::ByteBuffer*>(request)->Clear();
    if (!parse.ok()) {
      ++service_->counters_.unparseable;
      FinishLocked(ToGrpcStatus(parse, request_id_));
      return;
    }
    client_ids_ = "client_request_id=" + EscapeForLog(parsed.request_id(), 64) +
                  " client_session_id=" + EscapeForLog(parsed.session_id(), 64);
    auto native = ValidatePredictRequest(parsed, service_->options(), model->facts, request_id_);
    if (!native.ok()) {
      FinishLocked(ToGrpcStatus(native.status(), request_id_));
      return;
    }
    client_ids_.clear();  // valid: the ids below are the client's own
    request_id_ = native->request_id;
    session_id_ = native->session_id;
    native->received = start_;
    native->client = client_;
    native->deadline = SteadyDeadline(context_->deadline());
    Status submitted = model->engine->Submit(
        std::make_shared<ServeRequest>(std::move(native).value()), state_, cancelled_);
    if (!submitted.ok()) {
      if (submitted.code() == StatusCode::kResourceExhausted) {
        context_->AddTrailingMetadata("retry-after-ms",
                                      std::to_string(model->engine->SuggestRetryAfterMs()));
      }
      FinishLocked(ToGrpcStatus(submitted, request_id_));
      return;
    }
    model_ = std::move(model);  // keep the engine alive while it works for us
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(state_->mu);
    writing_ = false;
    state_->write_since_ns = 0;
    if (!ok) {  // the client is gone, or the call was cancelled while the write waited
      cancelled_->store(true);
      if (model_) model_->engine->Wake();
      FinishLocked(cancel_reason_
                       ? *cancel_reason_
                       : grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    cancelled_->store(true);
    if (model_) model_->engine->Wake();  // the engine drops it at its next step
    std::lock_guard<std::recursive_mutex> lock(state_->mu);
    if (!cancel_reason_) cancel_reason_ = CancelReason();
    if (!writing_) FinishLocked(*cancel_reason_);
  }

  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> lock(state_->mu);
      state_->reactor = nullptr;
      state_->write_since_ns = 0;
    }
    ReleaseClientSlot();  // if Finish was never reached
    service_->Unregister(state_.get());
    delete this;
  }

  // Called by the watchdog (state lock held): the client has not taken a write for `timeout`.
  void WriteTimedOut(std::chrono::milliseconds timeout) {
    if ((finished_ && !writing_) || write_timed_out_) return;  // once per call
    write_timed_out_ = true;
    ++service_->counters_.write_timeouts;
    cancel_reason_ = grpc::Status(grpc::StatusCode::CANCELLED,
                                  "the client read nothing for " + std::to_string(timeout.count()) +
                                      " ms (--stream-write-timeout); the call was cut");
    cancelled_->store(true);
    if (model_) model_->engine->Wake();
    context_->TryCancel();
  }

  // Engine events (state lock held).
  void AddDelta(OutputDelta d) {
    pending_.ids.insert(pending_.ids.end(), d.ids.begin(), d.ids.end());
    pending_.text += d.text;
    for (TokenLogprob& lp : d.logprobs) pending_.logprobs.push_back(std::move(lp));
    MaybeWriteLocked();
  }
  void SetResult(ServeResult result) {
    result_ = std::move(result);
    MaybeWriteLocked();
  }
  void SetError(Status status) {
    error_ = std::move(status);
    MaybeWriteLocked();
  }

 private:
  // Why the call was cancelled: the deadline, or the client. The client's own deadline timer
  // fires (and cancels the call) just before ours, which started when the request arrived: a
  // cancel within kDeadlineSlack of the deadline is the deadline.
  grpc::Status CancelReason() const {
    if (context_->deadline() <= std::chrono::system_clock::now() + kDeadlineSlack) {
      return {grpc::StatusCode::DEADLINE_EXCEEDED, "the call's deadline passed"};
    }
    return {grpc::StatusCode::CANCELLED, "cancelled by the client"};
  }

  void Write(v1::PredictResponse& message) {
    current_ = SerializeResponse(message);
    writing_ = true;
    state_->write_since_ns = NowNs();
  }

  void MaybeWriteLocked() {
    if (finished_ || writing_) return;
    if (!pending_.ids.empty() || !pending_.text.empty()) {
      v1::PredictResponse message;
      v1::TokenDelta* d = message.mutable_delta();
      for (int32_t id : pending_.ids) d->add_token_ids(static_cast<uint32_t>(id));
      d->set_text(std::move(pending_.text));
      for (const TokenLogprob& lp : pending_.logprobs) {
        v1::TokenLogprob* p = d->add_logprobs();
        p->set_logprob(lp.logprob);
        p->set_forced(lp.forced);
        for (const auto& [id, l] : lp.top) {
          v1::TokenAlternative* alt = p->add_top();
          alt->set_token_id(static_cast<uint32_t>(id));
          alt->set_logprob(l);
        }
      }
      pending_ = OutputDelta();
      Write(message);
      StartWrite(&current_);
      return;
    }
    if (result_) {
      v1::PredictResponse message;
      v1::PredictResult* r = message.mutable_result();
      r->set_text(result_->text);
      const ParsedAction& a = result_->action;
      r->mutable_action()->set_button(a.button);
      r->mutable_action()->set_reasoning(a.reasoning);
      r->mutable_action()->set_context(a.context);
      for (const auto& [key, value] : a.fields)
        (*r->mutable_action()->mutable_fields())[key] = value;
      r->mutable_action()->set_confidence(a.confidence);
      r->mutable_action()->set_logprob(a.logprob);
      r->set_finish_reason(result_->finish == FinishReason::kStop ? v1::FINISH_REASON_STOP
                                                                  : v1::FINISH_REASON_LENGTH);
      r->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(result_->prompt_tokens));
      r->mutable_usage()->set_completion_tokens(static_cast<uint32_t>(result_->tokens.size()));
      r->mutable_usage()->set_images(static_cast<uint32_t>(result_->images));
      r->mutable_usage()->set_forced_tokens(static_cast<uint32_t>(result_->forced_tokens));
      r->mutable_usage()->set_sampled_tokens(static_cast<uint32_t>(result_->sampled_tokens));
      const ServeTimings& t = result_->timings;
      v1::Timings* pt = r->mutable_timings();
      pt->set_queue_us(t.queue_us);
      pt->set_preprocess_us(t.preprocess_us);
      pt->set_vision_us(t.vision_us);
      pt->set_prefill_us(t.prefill_us);
      pt->set_decode_us(t.decode_us);
      pt->set_first_token_us(t.first_token_us);
      pt->set_total_us(t.total_us);
      context_->AddTrailingMetadata("vlmserve-timings-us", TimingsString(t));
      context_->AddTrailingMetadata("vlmserve-request-id", request_id_);
      finished_ = true;
      Ended(grpc::Status::OK);
      ReleaseClientSlot();  // before the client can see the end (see FinishLocked)
      Write(message);
      StartWriteAndFinish(&current_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    if (error_) FinishLocked(ToGrpcStatus(*error_, request_id_));
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    // Only a validated or server-made id ever reaches metadata (gRPC aborts on bad header bytes).
    context_->AddTrailingMetadata("vlmserve-request-id", request_id_);
    Ended(status);
    // Before the status goes out: a client that sees its call end may start the next one at
    // once, and must find its --max-concurrent-per-client slot free (OnDone comes later).
    ReleaseClientSlot();
    Finish(status);
  }

  void ReleaseClientSlot() {
    if (!holds_client_slot_) return;
    holds_client_slot_ = false;
    service_->limiter().Release(client_);
  }

  // Counts the outcome and writes the request's one log line.
  void Ended(const grpc::Status& status) {
    ++service_->counters_.ended[static_cast<int>(status.error_code()) % ServiceCounters::kCodes];
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
    if (service_->options().log_format == "json") {
      // One JSON object per request; nlohmann escapes control bytes, and the message was
      // sanitized (and is escaped again) so the line is always one valid object.
      nlohmann::json j = {{"event", "predict"},
                          {"id", request_id_},
                          {"session", session_id_},
                          {"key", key_name_},
                          {"peer", peer_},
                          {"code", GrpcCodeName(status.error_code())},
                          {"ms", ms}};
      if (status.ok() && result_) {
        const ServeTimings& t = result_->timings;
        j["prompt_tokens"] = result_->prompt_tokens;
        j["images"] = result_->images;
        j["tokens"] = result_->tokens.size();
        j["forced_tokens"] = result_->forced_tokens;
        j["finish"] = result_->finish == FinishReason::kStop ? "stop" : "length";
        j["phases_us"] = {{"queue", t.queue_us},   {"preprocess", t.preprocess_us},
                          {"vision", t.vision_us}, {"prefill", t.prefill_us},
                          {"decode", t.decode_us}, {"first_token", t.first_token_us},
                          {"total", t.total_us}};
        if (!result_->action.button.empty()) j["button"] = result_->action.button;
      } else {
        j["message"] = EscapeForLog(status.error_message(), 1024);
        if (!client_ids_.empty()) j["client_ids"] = client_ids_;
      }
      spdlog::info("{}", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      return;
    }
    const std::string who =
        (key_name_.empty() ? "" : " key=" + key_name_) + " peer=" + EscapeForLog(peer_, 64);
    if (status.ok() && result_) {
      spdlog::info(
          "predict id={} session={}{} OK prompt_tokens={} images={} tokens={} finish={} "
          "total_ms={:.1f} first_token_ms={:.1f} [{}]",
          request_id_, session_id_, who, result_->prompt_tokens, result_->images,
          result_->tokens.size(), result_->finish == FinishReason::kStop ? "stop" : "length", ms,
          result_->timings.first_token_us / 1000.0, TimingsString(result_->timings));
    } else {
      // The message is already sanitized (ToGrpcStatus); escape again for gRPC's own messages.
      spdlog::info("predict id={} session={}{} {} after {:.1f} ms: {}{}{}", request_id_,
                   session_id_, who, GrpcCodeName(status.error_code()), ms,
                   EscapeForLog(status.error_message(), 1024), client_ids_.empty() ? "" : " ",
                   client_ids_);
    }
  }

  VlmService* service_;
  grpc::CallbackServerContext* context_;
  std::shared_ptr<CallState> state_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  std::shared_ptr<ServingModel> model_;
  Clock::time_point start_;
  std::string request_id_, session_id_;
  std::string peer_, key_name_, client_;  // client_: the key's name, else the peer's address
  bool holds_client_slot_ = false;
  std::string client_ids_;  // the client's ids, escaped, when they were refused (for the log)
  // Guarded by state_->mu:
  grpc::ByteBuffer current_;  // the message being written
  OutputDelta pending_;       // coalesced while a write is outstanding
  std::optional<ServeResult> result_;
  std::optional<Status> error_;
  std::optional<grpc::Status> cancel_reason_;
  bool writing_ = false, finished_ = false, write_timed_out_ = false;
};

void VlmService::CallState::OnDelta(OutputDelta delta) {
  std::lock_guard<std::recursive_mutex> lock(mu);
  if (reactor) reactor->AddDelta(std::move(delta));
}
void VlmService::CallState::OnResult(ServeResult result) {
  std::lock_guard<std::recursive_mutex> lock(mu);
  if (reactor) reactor->SetResult(std::move(result));
}
void VlmService::CallState::OnError(Status status) {
  std::lock_guard<std::recursive_mutex> lock(mu);
  if (reactor) reactor->SetError(std::move(status));
}
void VlmService::CallState::CancelForWriteTimeout(std::chrono::milliseconds timeout) {
  std::lock_guard<std::recursive_mutex> lock(mu);
  if (reactor) reactor->WriteTimedOut(timeout);
}

VlmService::VlmService(ServerOptions options)
    : options_(std::move(options)),
      limiter_({options_.max_concurrent_per_client, options_.max_rps_per_client}) {
  if (options_.stream_write_timeout.count() > 0) watchdog_ = std::thread([this] { Watchdog(); });
}

VlmService::~VlmService() {
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    closing_ = true;
  }
  calls_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

void VlmService::Register(const std::shared_ptr<CallState>& call) {
  std::lock_guard<std::mutex> lock(calls_mu_);
  calls_.emplace(call.get(), call);
}

void VlmService::Unregister(const CallState* call) {
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    calls_.erase(call);
  }
  calls_cv_.notify_all();
}

size_t VlmService::live_calls() const {
  std::lock_guard<std::mutex> lock(calls_mu_);
  return calls_.size();
}

bool VlmService::WaitForNoCalls(Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(calls_mu_);
  calls_cv_.wait_until(lock, deadline, [this] { return calls_.empty() || interrupted_; });
  return calls_.empty();
}

void VlmService::Interrupt() {
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    interrupted_ = true;
  }
  calls_cv_.notify_all();
}

// Cuts calls whose outstanding write the client has not taken for --stream-write-timeout. Checks
// a few times per timeout, so a stuck call is cut within 1.25 timeouts.
void VlmService::Watchdog() {
  const auto timeout = options_.stream_write_timeout;
  const auto period = std::clamp<std::chrono::milliseconds>(
      timeout / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  std::unique_lock<std::mutex> lock(calls_mu_);
  while (!closing_) {
    calls_cv_.wait_for(lock, period, [this] { return closing_; });
    if (closing_) break;
    const int64_t now = NowNs();
    const int64_t limit = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    std::vector<std::shared_ptr<CallState>> stuck;
    for (const auto& [key, weak] : calls_) {
      if (auto call = weak.lock()) {
        const int64_t since = call->write_since_ns.load();
        if (since != 0 && now - since > limit) stuck.push_back(std::move(call));
      }
    }
    if (stuck.empty()) continue;
    lock.unlock();  // a cancel may run reactions inline, and those unregister calls
    for (const auto& call : stuck) call->CancelForWriteTimeout(timeout);
    lock.lock();
  }
}

void VlmService::SetModel(std::shared_ptr<ServingModel> model) {
  std::lock_guard<std::mutex> lock(mu_);
  model_ = std::move(model);
}

std::shared_ptr<ServingModel> VlmService::TakeModel() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  return std::move(model_);
}

std::shared_ptr<ServingModel> VlmService::Current(grpc::Status* unavailable) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!model_) {
    *unavailable = grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        stopped_ ? "the server is shutting down" : "the model is loading; retry shortly");
  }
  return model_;
}

std::string VlmService::NextRequestId() { return "req-" + std::to_string(++counter_); }

grpc::ServerWriteReactor<grpc::ByteBuffer>* VlmService::Predict(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new PredictReactor(this, context, request);
}

void VlmService::SetApiKeys(std::shared_ptr<const ApiKeys> keys) {
  std::lock_guard<std::mutex> lock(keys_mu_);
  keys_ = std::move(keys);
}

std::shared_ptr<const ApiKeys> VlmService::api_keys() const {
  std::lock_guard<std::mutex> lock(keys_mu_);
  return keys_;
}

std::optional<std::string> VlmService::Authenticate(const grpc::CallbackServerContext& context,
                                                    grpc::Status* refused) {
  std::shared_ptr<const ApiKeys> keys = api_keys();
  if (!keys) return std::string();
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  std::optional<std::string> name;
  if (it != metadata.end()) {
    name = keys->Authenticate(std::string_view(it->second.data(), it->second.size()));
  }
  if (!name) {
    ++counters_.unauthenticated;
    *refused = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            it == metadata.end()
                                ? "this server needs an API key: send \"authorization: Bearer KEY\""
                                : "the API key is not valid");
  }
  return name;
}

grpc::ServerUnaryReactor* VlmService::GetModelInfo(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!options_.public_model_info) {
    grpc::Status refused;
    if (!Authenticate(*context, &refused)) {
      reactor->Finish(refused);
      return reactor;
    }
  }
  v1::GetModelInfoRequest parsed;
  if (Status s = ParseRequest(*request, &parsed); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s, "-"));
    return reactor;
  }
  grpc::Status unavailable;
  std::shared_ptr<ServingModel> model = Current(&unavailable);
  if (!model) {
    reactor->Finish(unavailable);
    return reactor;
  }
  *reply = SerializeResponse(model->info);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace vlmserve
