// vlmserve-bench: Predict load against a running server, with real frames.
//
//   vlmserve-bench --server ADDR (--frames F1 [F2 F3 F4] | --grid FILE | --synthetic)
//                  [--prompt TEXT] [--max-new-tokens N] [--connections K] [--json]
//                  (-c N -n M | --rps R --duration S)
//
//   closed loop  -c N -n M: N clients, each sending its next request when the last one ended,
//                M requests in all (saturation throughput)
//   open loop    --rps R --duration S: requests start at a fixed rate R for S seconds, whatever
//                the answers (latency against offered load)
//
// Prints requests per second, end-to-end latency (the whole stream, as ghz measures it) and time
// to first token (from the server's own timings, which ghz cannot see) at p50/p90/p99, and the
// count of each final status. Exit codes: 0 ran (whatever the statuses), 1 could not run, 2 usage.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "client/client.h"
#include "client/cli/security_options.h"

namespace vlmserve {
namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  double latency_ms = 0, ttft_ms = 0;
  grpc::StatusCode code = grpc::StatusCode::OK;
  uint32_t tokens = 0, forced = 0, sampled = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::min<double>(v.size() - 1, p / 100.0 * v.size()));
  return v[i];
}

Sample Call(VlmClient& client, const v1::PredictRequest& req) {
  const auto t0 = Clock::now();
  PredictOutcome o = client.Predict(req, {}, std::chrono::minutes(10));
  Sample s;
  s.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  s.code = o.status.error_code();
  if (o.status.ok()) {
    s.ttft_ms = o.result.timings().first_token_us() / 1000.0;
    s.tokens = o.result.usage().completion_tokens();
    s.forced = o.result.usage().forced_tokens();
    s.sampled = o.result.usage().sampled_tokens();
  }
  return s;
}

int Run(int argc, char** argv) {
  CLI::App app{
      "vlmserve-bench: Predict load against a vlmserve server — closed loop (-c N -n M) or open "
      "loop (--rps R --duration S) — printing throughput, latency and time to first token "
      "percentiles and the status counts."};
  std::string server = "127.0.0.1:50051", grid, prompt = "Which button next?";
  std::vector<std::string> frames;
  bool synthetic = false, as_json = false;
  int concurrency = 1, connections = 1;
  int64_t total = 0;
  double rps = 0, duration_s = 0;
  uint32_t max_new = 0;  // 0: unset (see --max-new-tokens)
  app.add_option("--server", server, "host:port")->default_val("127.0.0.1:50051");
  auto* fr = app.add_option("--frames", frames, "1 to 4 frame images (PNG/JPEG), oldest first")
                 ->expected(1, 4);
  auto* gr = app.add_option("--grid", grid, "One pre-composed grid image");
  auto* sy = app.add_flag("--synthetic", synthetic,
                          "Four raw 240x160 frames of a drawn test pattern instead of files");
  fr->excludes(gr)->excludes(sy);
  gr->excludes(sy);
  app.add_option("--prompt", prompt, "The instruction")->default_val("Which button next?");
  app.add_option("--max-new-tokens", max_new,
                 "Per request. Default: action mode leaves it to the server (its "
                 "--default-max-new-tokens, 64: room for the action), text mode 16");
  std::string output_mode = "action";
  app.add_option("--output-mode", output_mode,
                 "action: one JSON action per request (the server's default); text: free text "
                 "of --max-new-tokens tokens")
      ->default_val("action")
      ->check(CLI::IsMember({"action", "text"}));
  app.add_option("-c,--concurrency", concurrency, "Closed loop: concurrent clients")
      ->check(CLI::Range(1, 4096));
  app.add_option("-n,--requests", total, "Closed loop: requests in all")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--rps", rps, "Open loop: requests started per second")
      ->check(CLI::Range(0.001, 1e6));
  app.add_option("--duration", duration_s, "Open loop: seconds")->check(CLI::Range(0.001, 86400.0));
  app.add_option("--connections", connections, "HTTP/2 connections, shared round-robin")
      ->default_val(1)
      ->check(CLI::Range(1, 1024));
  app.add_flag("--json", as_json, "Print one JSON object");
  ClientSecurity security;
  AddSecurityOptions(app, &security);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const bool closed = total > 0, open = rps > 0 || duration_s > 0;
  if (closed == open || (open && (rps <= 0 || duration_s <= 0))) {
    std::fprintf(stderr, "vlmserve-bench: give -c N -n M (closed loop) or --rps R --duration S\n");
    return 2;
  }
  if (frames.empty() && grid.empty() && !synthetic) {
    std::fprintf(stderr, "vlmserve-bench: give --frames, --grid or --synthetic\n");
    return 2;
  }

  v1::PredictRequest req;
  auto read = [](const std::string& path, std::string* out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    out->assign(std::istreambuf_iterator<char>(in), {});
    return true;
  };
  for (const std::string& f : frames) {
    if (!read(f, req.add_frames()->mutable_encoded())) {
      std::fprintf(stderr, "vlmserve-bench: cannot read %s\n", f.c_str());
      return 1;
    }
  }
  if (!grid.empty() && !read(grid, req.mutable_grid()->mutable_encoded())) {
    std::fprintf(stderr, "vlmserve-bench: cannot read %s\n", grid.c_str());
    return 1;
  }
  if (synthetic) {
    for (int t = 0; t < 4; ++t) {  // a moving square on a gradient: four different frames
      v1::RawImage* raw = req.add_frames()->mutable_raw();
      raw->set_width(240);
      raw->set_height(160);
      std::string rgb(240 * 160 * 3, '\0');
      for (int y = 0; y < 160; ++y) {
        for (int x = 0; x < 240; ++x) {
          const bool square = x >= 40 + 30 * t && x < 70 + 30 * t && y >= 60 && y < 90;
          char* p = &rgb[static_cast<size_t>((y * 240 + x) * 3)];
          p[0] = static_cast<char>(square ? 250 : x);
          p[1] = static_cast<char>(square ? 30 : y);
          p[2] = static_cast<char>(square ? 30 : 128);
        }
      }
      raw->set_rgb(std::move(rgb));
    }
  }
  req.set_prompt(prompt);
  // An action needs ~25 tokens of JSON: a small explicit limit fails every request with
  // INVALID_ARGUMENT, so action mode sends none unless asked.
  if (max_new == 0 && output_mode == "text") max_new = 16;
  if (max_new > 0) req.mutable_options()->set_max_new_tokens(max_new);
  req.mutable_options()->set_output_mode(output_mode == "text" ? v1::OUTPUT_MODE_TEXT
                                                               : v1::OUTPUT_MODE_ACTION_JSON);

  std::vector<std::unique_ptr<VlmClient>> clients;
  for (int i = 0; i < connections; ++i) {
    clients.push_back(
        std::make_unique<VlmClient>(server, 64u << 20, /*own_connection=*/i > 0, security));
    if (!clients.back()->error().empty()) {
      std::fprintf(stderr, "vlmserve-bench: %s\n", clients.back()->error().c_str());
      return 1;
    }
  }
  if (clients[0]->Health() != "SERVING") {
    std::fprintf(stderr, "vlmserve-bench: %s is not SERVING\n", server.c_str());
    return 1;
  }

  std::mutex mu;
  std::vector<Sample> samples;
  std::atomic<int64_t> next{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  if (closed) {
    for (int c = 0; c < concurrency; ++c) {
      threads.emplace_back([&, c] {
        VlmClient& client = *clients[static_cast<size_t>(c % connections)];
        while (next.fetch_add(1) < total) {
          const Sample s = Call(client, req);
          std::lock_guard<std::mutex> lock(mu);
          samples.push_back(s);
        }
      });
    }
  } else {
    const int64_t n = static_cast<int64_t>(rps * duration_s);
    const auto interval = std::chrono::duration<double>(1.0 / rps);
    for (int64_t i = 0; i < n; ++i) {
      std::this_thread::sleep_until(start +
                                    std::chrono::duration_cast<Clock::duration>(interval * i));
      threads.emplace_back([&, i] {
        const Sample s = Call(*clients[static_cast<size_t>(i % connections)], req);
        std::lock_guard<std::mutex> lock(mu);
        samples.push_back(s);
      });
    }
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> latency, ttft;
  std::map<std::string, int64_t> codes;
  uint64_t tokens = 0, forced = 0, sampled = 0;
  for (const Sample& s : samples) {
    ++codes[std::to_string(static_cast<int>(s.code))];
    if (s.code != grpc::StatusCode::OK) continue;
    latency.push_back(s.latency_ms);
    ttft.push_back(s.ttft_ms);
    tokens += s.tokens;
    forced += s.forced;
    sampled += s.sampled;
  }
  const double ok = static_cast<double>(std::max<size_t>(latency.size(), 1));
  const double ok_rps = static_cast<double>(latency.size()) / seconds;
  nlohmann::json j = {{"mode", closed ? "closed" : "open"},
                      {"concurrency", closed ? concurrency : 0},
                      {"offered_rps", closed ? 0.0 : rps},
                      {"requests", samples.size()},
                      {"seconds", seconds},
                      {"ok_rps", ok_rps},
                      {"tokens_per_second", static_cast<double>(tokens) / seconds},
                      {"latency_ms",
                       {{"p50", Percentile(latency, 50)},
                        {"p90", Percentile(latency, 90)},
                        {"p99", Percentile(latency, 99)}}},
                      {"time_to_first_token_ms",
                       {{"p50", Percentile(ttft, 50)},
                        {"p90", Percentile(ttft, 90)},
                        {"p99", Percentile(ttft, 99)}}},
                      {"tokens_per_request",
                       {{"completion", static_cast<double>(tokens) / ok},
                        {"forced", static_cast<double>(forced) / ok},
                        {"sampled", static_cast<double>(sampled) / ok}}},
                      {"status_codes", codes}};
  if (as_json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%zu requests in %.2f s: %.2f ok/s, %.1f tokens/s\n", samples.size(), seconds,
                ok_rps, static_cast<double>(tokens) / seconds);
    std::printf("tokens per request: %.1f (%.1f forced, %.1f sampled)\n",
                static_cast<double>(tokens) / ok, static_cast<double>(forced) / ok,
                static_cast<double>(sampled) / ok);
    std::printf("latency ms  p50 %.1f  p90 %.1f  p99 %.1f\n", Percentile(latency, 50),
                Percentile(latency, 90), Percentile(latency, 99));
    std::printf("first token ms (server)  p50 %.1f  p90 %.1f  p99 %.1f\n", Percentile(ttft, 50),
                Percentile(ttft, 90), Percentile(ttft, 99));
    for (const auto& [code, n] : codes) {  // gRPC status codes: 0 OK, 4 DEADLINE_EXCEEDED, ...
      std::printf("status %s: %lld\n", code == "0" ? "0 (OK)" : code.c_str(),
                  static_cast<long long>(n));
    }
  }
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
