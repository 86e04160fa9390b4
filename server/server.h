// VlmServer: the gRPC server's lifecycle. Start() binds and begins answering at once — health
// NOT_SERVING, Predict UNAVAILABLE "loading" — so orchestration sees a live process while the
// model loads; LoadModel() (or Serve() with a given runner) loads, warms up with one real
// inference, starts the engine and only then turns health to SERVING. Shutdown() turns health to
// NOT_SERVING, refuses new calls, lets running streams finish for up to `grace` (or until
// StopNow() is called from another thread: a second signal), cancels the rest, and stops the
// engine.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "server/metrics_http.h"
#include "server/options.h"
#include "server/service.h"
#include "server/tls.h"

namespace vlmserve {

class VlmServer {
 public:
  static StatusOr<std::unique_ptr<VlmServer>> Start(const ServerOptions& options);
  ~VlmServer();

  int port() const { return port_; }
  int health_port() const { return health_port_; }
  // SIGHUP: reloads the API key file and the TLS files. An error leaves the old ones in use.
  Status Reload();

  // Loads options.model_dir (or the built-in model) for options.device, warms up, serves.
  Status LoadModel();
  // Warms up and serves `engine` (made with EngineOptionsFor(options) and FatalHandler(); tests
  // give an engine over a fake runner for transport-only checks).
  Status Serve(StatusOr<std::unique_ptr<ServeEngine>> engine);
  // The engine's on_fatal: the runner's device failed for good → NOT_SERVING on both ports, the
  // error logged, then options.on_fatal (main: exit for a restart).
  std::function<void(const Status&)> FatalHandler();
  // Whether FatalHandler has run: the model runner failed for good.
  bool runner_failed() const { return runner_failed_.load(); }

  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(8));
  // Cuts a Shutdown() that is draining short: the remaining calls are cancelled now. Any thread.
  void StopNow();

  // For tests and logs.
  const VlmService& service() const { return *service_; }
  // The engine, while a model is served (null before and after).
  std::shared_ptr<ServingModel> serving() const {
    std::lock_guard<std::mutex> lock(serving_mu_);
    return serving_;
  }
  int metrics_port() const { return metrics_ ? metrics_->port() : -1; }

 private:
  std::atomic<bool> runner_failed_{false};
  VlmServer() = default;
  ServerOptions options_;
  std::unique_ptr<VlmService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;  // --health-port: plaintext, health only
  std::unique_ptr<TlsMaterial> tls_;
  int health_port_ = -1;
  mutable std::mutex serving_mu_;  // the metrics endpoint reads serving_ from its threads
  std::shared_ptr<ServingModel> serving_;
  std::unique_ptr<MetricsServer> metrics_;
  int port_ = 0;
  std::atomic<bool> shut_down_{false};
};

// <directory of the running executable>/../share/vlmserve/models/builtin, or "" if unknown.
std::string BuiltinModelDir();

// The version string reported by GetModelInfo and --version.
const char* ServerVersion();

}  // namespace vlmserve
