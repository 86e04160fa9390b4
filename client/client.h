// VlmClient: a small C++ client for vlmserve (used by vlmserve-client and the end-to-end tests).
// Predict streams deltas to a callback and returns the final result with the call's status and
// trailing metadata; Health asks grpc.health.v1 for the overall status.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "vlmserve/v1/vlmserve.grpc.pb.h"

namespace vlmserve {

struct PredictOutcome {
  grpc::Status status;
  v1::PredictResult result;   // set when status is OK
  int deltas = 0;             // TokenDelta messages received
  std::string streamed_text;  // the deltas' texts, concatenated
  std::multimap<std::string, std::string> trailers;
};

class VlmClient {
 public:
  // `own_connection`: a TCP connection of its own rather than one shared with other clients of
  // the same address (load generators spread streams over several).
  explicit VlmClient(const std::string& address, uint64_t max_message_bytes = 64u << 20,
                     bool own_connection = false);

  PredictOutcome Predict(const v1::PredictRequest& request,
                         const std::function<void(const v1::TokenDelta&)>& on_delta = {},
                         std::chrono::milliseconds timeout = std::chrono::minutes(5));
  grpc::Status GetModelInfo(v1::ModelInfo* info);
  // "SERVING", "NOT_SERVING", … or the RPC error's message.
  std::string Health(const std::string& service = "", grpc::Status* status = nullptr);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VlmService::Stub> stub_;
};

}  // namespace vlmserve
