// Shared by the end-to-end tests: the server on 127.0.0.1 (port 0) with the tiny checkpoint (the
// built-in model's source) on the CPU runner, or over a fake runner for transport-only checks.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "client/client.h"
#include "model/model_dir.h"
#include "server/server.h"
#include "tests/support/fake_runner.h"
#include "tests/test_paths.h"

namespace vlmserve::e2e {

using vlmserve::testing::FixturePath;

inline const std::string kModel = "decoder/pool16_six_layers";  // the built-in model's source

// One log line per request is the server's contract, but hundreds of them drown test output.
inline const bool kQuietLogs = [] {
  spdlog::set_level(spdlog::level::warn);
  return true;
}();

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}
inline std::string Fixture(const std::string& rel) { return ReadFile(FixturePath(rel)); }

inline ServerOptions TestOptions() {
  ServerOptions o;
  o.port = 0;
  o.model_dir = FixturePath(kModel);
  o.image.max_encoded_bytes = 300000;
  o.max_message_bytes = 4u << 20;
  o.max_context_tokens = 120;
  o.max_new_tokens_cap = 64;
  o.default_max_new_tokens = 8;
  o.max_prompt_bytes = 2000;
  o.max_system_prompt_bytes = 1000;
  return o;
}

struct Running {
  std::unique_ptr<VlmServer> server;
  std::unique_ptr<VlmClient> client;
};

inline Running StartServer(const ServerOptions& o, bool load = true) {
  auto s = VlmServer::Start(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  Running r{std::move(s).value(), nullptr};
  if (load) {
    Status st = r.server->LoadModel();
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  r.client = std::make_unique<VlmClient>("127.0.0.1:" + std::to_string(r.server->port()));
  return r;
}

inline v1::PredictRequest ValidRequest() {
  v1::PredictRequest r;
  r.mutable_grid()->set_encoded(Fixture(kModel + "/image0.png"));
  r.set_prompt("What do you see?");
  // Free text: most transport tests count tokens; the fake runner ignores masks. Actions have
  // their own tests.
  r.mutable_options()->set_output_mode(v1::OUTPUT_MODE_TEXT);
  return r;
}

struct FakeServer {
  Running running;
  testing::FakeModelRunner* fake = nullptr;
};

inline FakeServer StartFakeWith(const ServerOptions& o, std::chrono::milliseconds delay) {
  FakeServer f{StartServer(o, /*load=*/false), nullptr};
  auto model = ModelDir::Load(FixturePath(kModel));
  EXPECT_TRUE(model.ok());
  auto owned = std::make_unique<ModelDir>(std::move(model).value());
  auto fake = std::make_unique<testing::FakeModelRunner>(owned->config, delay);
  f.fake = fake.get();
  EngineOptions eo = EngineOptionsFor(o);
  eo.on_fatal = f.running.server->FatalHandler();
  Status st = f.running.server->Serve(
      ServeEngine::Create(std::move(owned), std::move(fake), std::move(eo)));
  EXPECT_TRUE(st.ok()) << st.ToString();
  return f;
}

// Waits (up to 3 s) until the engine runs nothing and holds no sequence, page or image: what every
// ended request must leave behind.
// Waits (up to 3 s) until the engine runs nothing and holds no sequence and no page but the
// prefix cache's: what every ended request must leave behind. (The engine publishes its counters
// after the step in which a result went out, so a client may see its result a moment earlier.)
inline bool EngineIdle(const ServeEngine& engine) {
  for (int i = 0; i < 300; ++i) {
    const EngineStats s = engine.stats();
    if (s.running == 0 && s.queued == 0 && s.kv.live_sequences == 0 &&
        s.kv.full_pages_used == (s.kv.full_pages_used ? s.kv.cached_pages : 0) &&
        s.kv.sliding_pages_used == (s.kv.sliding_pages_used ? s.kv.cached_pages : 0)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

inline bool EngineIdle(const FakeServer& f) {
  if (!EngineIdle(*f.running.server->serving()->engine)) return false;
  for (int i = 0; i < 300 && f.fake->live_image_batches() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f.fake->live_image_batches() == 0;
}

// Transport tests run one request at a time (max_running 1), so that "running" and "queued" are
// what they say; the batching tests set their own.
inline FakeServer StartFake(std::chrono::milliseconds delay, size_t max_queue = 64) {
  ServerOptions o = TestOptions();
  o.max_queue = max_queue;
  o.max_running = 1;
  return StartFakeWith(o, delay);
}

}  // namespace vlmserve::e2e
