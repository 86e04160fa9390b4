// VlmService: the gRPC callback service (the route_guide callback pattern: ServerWriteReactor,
// nothing blocks inside a reaction, one write outstanding at a time).
//
// Both methods are raw: the service receives the request's bytes and parses them itself
// (server/request_parse.h), so a malformed message is INVALID_ARGUMENT with a reason, logged and
// counted, rather than gRPC's bare UNIMPLEMENTED.
//
// Predict: parse → validate (server/validate.h; ids first, since they are echoed) → hand a native
// ServeRequest to the engine with a sink → the engine thread pushes deltas/result/error into the
// call's state → the reactor writes them, coalescing whatever deltas piled up while a write was in
// flight into one TokenDelta, and ends with the result (timings also as trailing metadata) or the
// mapped error status. Client cancel, disconnect and the deadline set the request's cancellation
// flag, which the engine checks between steps. A watchdog cancels a call whose write the client
// has not taken for --stream-write-timeout (a client that stopped reading), so its state is freed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "engine/serve_engine.h"
#include "server/auth.h"
#include "server/options.h"
#include "server/validate.h"
#include "vlmserve/v1/vlmserve.grpc.pb.h"

namespace vlmserve {

// The engine serving a model (it owns the model). Calls in flight hold a reference, so shutting
// down never pulls the engine from under them.
struct ServingModel {
  std::unique_ptr<ServeEngine> engine;
  v1::ModelInfo info;
  ModelFacts facts;
};

// How Predict calls ended, for the shutdown summary, tests and (later) the metrics endpoint.
struct ServiceCounters {
  static constexpr int kCodes = 17;          // gRPC status codes 0..16
  std::atomic<uint64_t> calls{0};            // Predict calls received
  std::atomic<uint64_t> ended[kCodes] = {};  // by final gRPC status code
  std::atomic<uint64_t> unparseable{0};      // requests that were not a valid PredictRequest
  std::atomic<uint64_t> write_timeouts{0};   // calls cut because the client stopped reading
  std::atomic<uint64_t> unauthenticated{0};  // calls refused for a missing or wrong API key
  std::atomic<uint64_t> client_limited{0};   // calls refused by a per-client limit
  uint64_t Ended(grpc::StatusCode code) const { return ended[static_cast<int>(code)].load(); }
  std::string Summary() const;  // "OK=12 INVALID_ARGUMENT=3 ..." (non-zero codes only)
};

using VlmServiceBase = v1::VlmService::WithRawCallbackMethod_Predict<
    v1::VlmService::WithRawCallbackMethod_GetModelInfo<v1::VlmService::Service>>;

class VlmService final : public VlmServiceBase {
 public:
  explicit VlmService(ServerOptions options);
  ~VlmService() override;  // stops the watchdog (after the server has stopped)

  // Until this is called Predict and GetModelInfo answer UNAVAILABLE ("loading").
  void SetModel(std::shared_ptr<ServingModel> model);
  // From now on: UNAVAILABLE ("shutting down"). Returns the model so the caller decides when the
  // engine stops.
  std::shared_ptr<ServingModel> TakeModel();

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Predict(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* reply) override;

  const ServerOptions& options() const { return options_; }
  // API keys (null = none configured). Replaceable at any time (SIGHUP).
  void SetApiKeys(std::shared_ptr<const ApiKeys> keys);
  std::shared_ptr<const ApiKeys> api_keys() const;
  // The caller's identity when the call may go on: the key's name, or "" without keys. Null with
  // UNAUTHENTICATED (and the call counted) when keys are configured and it has none that matches.
  std::optional<std::string> Authenticate(const grpc::CallbackServerContext& context,
                                          grpc::Status* refused);
  ClientLimiter& limiter() { return limiter_; }
  const ServiceCounters& counters() const { return counters_; }
  size_t live_calls() const;
  // Blocks until no Predict call is live (true), `deadline` passes or Interrupt() is called.
  bool WaitForNoCalls(std::chrono::steady_clock::time_point deadline);
  void Interrupt();

  struct CallState;  // one call's state shared with the engine (as its sink) and the watchdog

 private:
  friend class PredictReactor;
  std::string NextRequestId();
  void Register(const std::shared_ptr<CallState>& call);
  void Unregister(const CallState* call);
  void Watchdog();

  // The current model, or null with the reason: "loading" before SetModel, "shutting down" after.
  std::shared_ptr<ServingModel> Current(grpc::Status* unavailable);

  ServerOptions options_;
  ServiceCounters counters_;
  mutable std::mutex keys_mu_;
  std::shared_ptr<const ApiKeys> keys_;
  ClientLimiter limiter_;
  std::mutex mu_;  // guards model_ and stopped_
  std::shared_ptr<ServingModel> model_;
  bool stopped_ = false;
  std::atomic<uint64_t> counter_{0};

  mutable std::mutex calls_mu_;  // guards calls_, interrupted_, closing_
  std::condition_variable calls_cv_;
  std::unordered_map<const CallState*, std::weak_ptr<CallState>> calls_;
  bool interrupted_ = false, closing_ = false;
  std::thread watchdog_;
};

}  // namespace vlmserve
