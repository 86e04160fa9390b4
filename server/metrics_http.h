// The Prometheus endpoint: `GET /metrics` on --metrics-port (bound like --listen; 0 = a free port,
// logged), in the text exposition format. Everything is read at scrape time from the service's
// call counters and the engine's stats and histograms, so the endpoint costs nothing between
// scrapes. Metric names are listed in docs/operations.md.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace vlmserve {

class MetricsServer {
 public:
  // `render` produces the exposition text (called on the HTTP server's threads).
  static StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen, int port,
                                                        std::function<std::string()> render);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace vlmserve
