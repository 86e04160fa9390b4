// The metrics endpoint (see metrics_http.h).
#include "server/metrics_http.h"

#include <httplib.h>

namespace vlmserve {

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen, int port,
                                                              std::function<std::string()> render) {
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->http_ = std::make_unique<httplib::Server>();
  m->http_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  m->http_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("vlmserve metrics: GET /metrics\n", "text/plain");
  });
  m->port_ = port == 0 ? m->http_->bind_to_any_port(listen) : port;
  if (m->port_ < 0 || (port != 0 && !m->http_->bind_to_port(listen, port))) {
    return UnavailableError("cannot listen for metrics on " + listen + ":" + std::to_string(port) +
                            " (address in use, or not a local address?)");
  }
  m->thread_ = std::thread([server = m->http_.get()] { server->listen_after_bind(); });
  return m;
}

MetricsServer::~MetricsServer() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace vlmserve
