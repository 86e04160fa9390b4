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

// How to reach a server that uses TLS and/or API keys (server flags --tls-*, --api-key-file).
struct ClientSecurity {
  std::string tls_ca;              // PEM file: trust this CA (TLS on; empty = plaintext)
  std::string tls_cert, tls_key;   // PEM files: our client certificate (mTLS)
  std::string api_key;             // sent as "authorization: Bearer KEY"
  bool tls() const { return !tls_ca.empty(); }
};

// Reads the PEM files of `security` (false with `error` set if one cannot be read).
bool LoadClientSecurity(const ClientSecurity& security, grpc::SslCredentialsOptions* out,
                        std::string* error);

class VlmClient {
 public:
  // `own_connection`: a TCP connection of its own rather than one shared with other clients of
  // the same address (load generators spread streams over several).
  explicit VlmClient(const std::string& address, uint64_t max_message_bytes = 64u << 20,
                     bool own_connection = false, ClientSecurity security = {});
  // Why the client cannot work (an unreadable PEM file), or "".
  const std::string& error() const { return error_; }

  PredictOutcome Predict(const v1::PredictRequest& request,
                         const std::function<void(const v1::TokenDelta&)>& on_delta = {},
                         std::chrono::milliseconds timeout = std::chrono::minutes(5));
  grpc::Status GetModelInfo(v1::ModelInfo* info);
  // "SERVING", "NOT_SERVING", … or the RPC error's message.
  std::string Health(const std::string& service = "", grpc::Status* status = nullptr);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::VlmService::Stub> stub_;
  std::string api_key_, error_;
  void Authorize(grpc::ClientContext* ctx) const {
    if (!api_key_.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key_);
  }
};

}  // namespace vlmserve
