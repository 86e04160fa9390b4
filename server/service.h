// VlmService: the gRPC callback service (the route_guide callback pattern: ServerWriteReactor,
// nothing blocks inside a reaction, one write outstanding at a time).
//
// Predict: validate (server/validate.h) → hand a native ServeRequest to the engine with a sink →
// the engine thread pushes deltas/result/error into the call's channel → the reactor writes them,
// coalescing whatever deltas piled up while a write was in flight into one TokenDelta, and ends
// with the result (timings also as trailing metadata) or the mapped error status. Client cancel
// and disconnect set the request's cancellation flag, which the engine checks between steps.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "engine/serve_engine.h"
#include "server/options.h"
#include "server/validate.h"
#include "vlmserve/v1/vlmserve.grpc.pb.h"

namespace vlmserve {

// A loaded model and the engine serving it. Calls in flight hold a reference, so shutting down
// never pulls the engine from under them; the engine is destroyed before the model it reads.
struct ServingModel {
  std::unique_ptr<ModelDir> model;
  std::unique_ptr<ServeEngine> engine;
  v1::ModelInfo info;
  ModelFacts facts;
  ~ServingModel() { engine.reset(); }
};

class VlmService final : public v1::VlmService::CallbackService {
 public:
  explicit VlmService(ServerOptions options) : options_(std::move(options)) {}

  // Until this is called Predict and GetModelInfo answer UNAVAILABLE ("loading").
  void SetModel(std::shared_ptr<ServingModel> model);
  // From now on: UNAVAILABLE ("shutting down"). Returns the model so the caller decides when the
  // engine stops.
  std::shared_ptr<ServingModel> TakeModel();

  grpc::ServerWriteReactor<v1::PredictResponse>* Predict(
      grpc::CallbackServerContext* context, const v1::PredictRequest* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* reply) override;

  const ServerOptions& options() const { return options_; }

 private:
  friend class PredictReactor;
  std::string NextRequestId();

  // The current model, or null with the reason: "loading" before SetModel, "shutting down" after.
  std::shared_ptr<ServingModel> Current(grpc::Status* unavailable);

  ServerOptions options_;
  std::mutex mu_;  // guards model_ and stopped_
  std::shared_ptr<ServingModel> model_;
  bool stopped_ = false;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace vlmserve
