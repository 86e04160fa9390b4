// The Prometheus endpoint: after a few calls, /metrics holds every metric the issue names with
// the values the calls imply, and Debian's `promtool check metrics` accepts the exposition.
#include <httplib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/e2e/e2e_support.h"
#include "tests/support/run_command.h"

namespace vlmserve {
namespace {

using namespace vlmserve::e2e;  // NOLINT: the shared e2e helpers

TEST(MetricsTest, PrometheusExpositionAfterCalls) {
  ServerOptions o = TestOptions();
  o.metrics_port = 0;
  Running s = StartServer(o);
  ASSERT_GT(s.server->metrics_port(), 0);
  ASSERT_TRUE(s.client->Predict(ValidRequest()).status.ok());
  ASSERT_TRUE(s.client->Predict(ValidRequest()).status.ok());
  v1::PredictRequest bad = ValidRequest();
  bad.set_prompt("\xff");
  ASSERT_EQ(s.client->Predict(bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(EngineIdle(*s.server->serving()->engine));

  httplib::Client http("127.0.0.1", s.server->metrics_port());
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::string& text = res->body;
  for (const char* name :
       {"vlmserve_requests_total{code=\"OK\"} 2",
        "vlmserve_requests_total{code=\"INVALID_ARGUMENT\"} 1", "vlmserve_queue_depth 0",
        "vlmserve_running_requests 0", "vlmserve_batch_rows_bucket",
        "vlmserve_time_to_first_token_seconds_count 2", "vlmserve_request_duration_seconds_count 2",
        "vlmserve_phase_seconds_count{phase=\"vision\"} 2", "vlmserve_kv_pages_used{pool=\"full\"}",
        "vlmserve_kv_pages_total{pool=\"sliding\"}", "vlmserve_generated_tokens_total 16",
        "vlmserve_preemptions_total 0", "vlmserve_prefix_cache_hits_total"}) {
    EXPECT_NE(text.find(name), std::string::npos) << "missing: " << name;
  }
  const std::string promtool = VLMSERVE_PROMTOOL;
  if (promtool.empty() || promtool.find("NOTFOUND") != std::string::npos) {
    FAIL() << "promtool not found: scripts/bootstrap.sh installs Debian's prometheus package";
  }
  const std::string path =
      (std::filesystem::temp_directory_path() / ("vlmserve_metrics_" + std::to_string(::getpid())))
          .string();
  std::ofstream(path) << text;
  const testing::CommandResult check =
      testing::RunCommand(promtool + " check metrics < " + path + " 2>&1");
  std::filesystem::remove(path);
  EXPECT_EQ(check.exit_code, 0) << check.out;
}

}  // namespace
}  // namespace vlmserve
