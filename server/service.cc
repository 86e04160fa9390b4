// The Predict reactor and GetModelInfo (see service.h).
#include "server/service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "server/status_map.h"

namespace vlmserve {
namespace {

// The generated text parsed as an action when it is a JSON object of strings (best effort: the
// action grammar that guarantees it comes later).
void FillAction(const std::string& text, v1::Action* action) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) continue;
    const std::string v = value.get<std::string>();
    if (key == "button")
      action->set_button(v);
    else if (key == "reasoning")
      action->set_reasoning(v);
    else if (key == "context")
      action->set_context(v);
    else
      (*action->mutable_fields())[key] = v;
  }
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

// Printable, bounded text for log lines (ids come from clients).
std::string ForLog(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 128)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

// One Predict call. Lives until OnDone; the engine talks to it only through `Channel`, which
// outlives it and drops events once the call has finished.
class PredictReactor : public grpc::ServerWriteReactor<v1::PredictResponse> {
 public:
  struct Channel : public ResponseSink {
    std::recursive_mutex mu;  // recursive: a reaction could in principle run inline in StartWrite
    PredictReactor* reactor = nullptr;  // null once finished
    void OnDelta(std::vector<int32_t> ids, std::string text) override {
      std::lock_guard<std::recursive_mutex> lock(mu);
      if (!reactor) return;
      reactor->pending_ids_.insert(reactor->pending_ids_.end(), ids.begin(), ids.end());
      reactor->pending_text_ += text;
      reactor->MaybeWriteLocked();
    }
    void OnResult(ServeResult result) override {
      std::lock_guard<std::recursive_mutex> lock(mu);
      if (!reactor) return;
      reactor->result_ = std::move(result);
      reactor->MaybeWriteLocked();
    }
    void OnError(Status status) override {
      std::lock_guard<std::recursive_mutex> lock(mu);
      if (!reactor) return;
      reactor->error_ = std::move(status);
      reactor->MaybeWriteLocked();
    }
  };

  PredictReactor(VlmService* service, grpc::CallbackServerContext* context,
                 const v1::PredictRequest* request)
      : service_(service),
        context_(context),
        channel_(std::make_shared<Channel>()),
        cancelled_(std::make_shared<std::atomic<bool>>(false)),
        start_(std::chrono::steady_clock::now()) {
    channel_->reactor = this;
    request_id_ = request->request_id().empty() ? service->NextRequestId() : request->request_id();
    session_id_ = request->session_id();
    grpc::Status unavailable;
    std::shared_ptr<ServingModel> model = service->Current(&unavailable);
    std::lock_guard<std::recursive_mutex> lock(channel_->mu);
    if (!model) {
      FinishLocked(unavailable);
      return;
    }
    // Exceptions never leave a reactor: one here (a bug, or an allocation failure) is INTERNAL
    // with the request id, and the server goes on.
    try {
      Start(*request, std::move(model));
    } catch (const std::exception& e) {
      FinishLocked(ToGrpcStatus(InternalError(std::string("exception: ") + e.what()), request_id_));
    } catch (...) {
      FinishLocked(ToGrpcStatus(InternalError("unknown exception"), request_id_));
    }
  }

  // Validate, convert, submit to the engine; or finish with the reason. Called with the lock held.
  void Start(const v1::PredictRequest& request, std::shared_ptr<ServingModel> model) {
    auto native = ValidatePredictRequest(request, service_->options(), model->facts, request_id_);
    if (!native.ok()) {
      FinishLocked(ToGrpcStatus(native.status(), request_id_));
      return;
    }
    request_id_ = native->request_id;
    native->received = start_;
    Status submitted = model->engine->Submit(
        std::make_shared<ServeRequest>(std::move(native).value()), channel_, cancelled_);
    if (!submitted.ok()) {
      if (submitted.code() == StatusCode::kResourceExhausted) {
        context_->AddTrailingMetadata("retry-after-ms", "100");
      }
      FinishLocked(ToGrpcStatus(submitted, request_id_));
      return;
    }
    model_ = std::move(model);  // keep the engine alive while it works for us
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(channel_->mu);
    writing_ = false;
    if (!ok) {  // the client is gone
      cancelled_->store(true);
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    cancelled_->store(true);
    std::lock_guard<std::recursive_mutex> lock(channel_->mu);
    if (!writing_)
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> lock(channel_->mu);
      channel_->reactor = nullptr;
    }
    delete this;
  }

 private:
  void MaybeWriteLocked() {
    if (finished_ || writing_) return;
    if (!pending_ids_.empty() || !pending_text_.empty()) {
      current_.Clear();
      v1::TokenDelta* d = current_.mutable_delta();
      for (int32_t id : pending_ids_) d->add_token_ids(static_cast<uint32_t>(id));
      d->set_text(std::move(pending_text_));
      pending_ids_.clear();
      pending_text_.clear();
      writing_ = true;
      StartWrite(&current_);
      return;
    }
    if (result_) {
      current_.Clear();
      v1::PredictResult* r = current_.mutable_result();
      r->set_text(result_->text);
      FillAction(result_->text, r->mutable_action());
      r->set_finish_reason(result_->finish == FinishReason::kStop ? v1::FINISH_REASON_STOP
                                                                  : v1::FINISH_REASON_LENGTH);
      r->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(result_->prompt_tokens));
      r->mutable_usage()->set_completion_tokens(static_cast<uint32_t>(result_->tokens.size()));
      r->mutable_usage()->set_images(static_cast<uint32_t>(result_->images));
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
      Log(grpc::Status::OK);
      StartWriteAndFinish(&current_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    if (error_) FinishLocked(ToGrpcStatus(*error_, request_id_));
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    context_->AddTrailingMetadata("vlmserve-request-id", request_id_);
    Log(status);
    Finish(status);
  }

  void Log(const grpc::Status& status) {
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
            .count();
    if (status.ok() && result_) {
      spdlog::info(
          "predict id={} session={} OK prompt_tokens={} images={} tokens={} finish={} "
          "total_ms={:.1f} "
          "first_token_ms={:.1f} [{}]",
          ForLog(request_id_), ForLog(session_id_), result_->prompt_tokens, result_->images,
          result_->tokens.size(), result_->finish == FinishReason::kStop ? "stop" : "length", ms,
          result_->timings.first_token_us / 1000.0, TimingsString(result_->timings));
    } else {
      spdlog::info("predict id={} session={} {} after {:.1f} ms: {}", ForLog(request_id_),
                   ForLog(session_id_), GrpcCodeName(status.error_code()), ms,
                   status.error_message());
    }
  }

  VlmService* service_;
  grpc::CallbackServerContext* context_;
  std::shared_ptr<Channel> channel_;
  std::shared_ptr<std::atomic<bool>> cancelled_;
  std::shared_ptr<ServingModel> model_;
  std::chrono::steady_clock::time_point start_;
  std::string request_id_, session_id_;
  // Guarded by channel_->mu:
  v1::PredictResponse current_;  // the message being written
  std::vector<int32_t> pending_ids_;
  std::string pending_text_;
  std::optional<ServeResult> result_;
  std::optional<Status> error_;
  bool writing_ = false, finished_ = false;
};

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

grpc::ServerWriteReactor<v1::PredictResponse>* VlmService::Predict(
    grpc::CallbackServerContext* context, const v1::PredictRequest* request) {
  return new PredictReactor(this, context, request);
}

grpc::ServerUnaryReactor* VlmService::GetModelInfo(grpc::CallbackServerContext* context,
                                                   const v1::GetModelInfoRequest*,
                                                   v1::ModelInfo* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status unavailable;
  std::shared_ptr<ServingModel> model = Current(&unavailable);
  if (!model) {
    reactor->Finish(unavailable);
    return reactor;
  }
  *reply = model->info;
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace vlmserve
