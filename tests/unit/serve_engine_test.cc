// ServeEngine's threading contract (engine/README.md) with the fake runner: sinks are called on
// the engine thread only; Stop() ends the running request at a step boundary and the queued ones,
// each with exactly one OnError(UNAVAILABLE); deadlines and cancellation before the start; bytes
// admission.
#include "engine/serve_engine.h"

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

#include "tests/support/fake_runner.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using namespace std::chrono_literals;

// Records every event and the thread it came on.
class RecordingSink : public ResponseSink {
 public:
  void OnDelta(std::vector<int32_t> ids, std::string) override {
    Record();
    tokens += static_cast<int>(ids.size());
  }
  void OnResult(ServeResult) override {
    Record();
    ++ends;
    ok = true;
  }
  void OnError(Status s) override {
    Record();
    ++ends;
    status = std::move(s);
  }
  void Record() {
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(std::this_thread::get_id());
  }
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> tokens{0}, ends{0};
  bool ok = false;
  Status status;
};

struct Fixture {
  std::unique_ptr<ModelDir> model;
  testing::FakeModelRunner* fake = nullptr;
  std::unique_ptr<ServeEngine> engine;
};

Fixture MakeEngine(std::chrono::milliseconds delay, EngineOptions options = {}) {
  Fixture f;
  auto model = ModelDir::Load(testing::FixturePath("decoder/pool16_six_layers"));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  f.model = std::make_unique<ModelDir>(std::move(model).value());
  auto fake = std::make_unique<testing::FakeModelRunner>(f.model->config, delay);
  f.fake = fake.get();
  auto engine = ServeEngine::Create(*f.model, std::move(fake), options);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  f.engine = std::move(engine).value();
  f.engine->Start();
  return f;
}

std::shared_ptr<ServeRequest> TextRequest(int max_new_tokens) {
  auto r = std::make_shared<ServeRequest>();
  r->request_id = "t";
  r->frames.push_back({true, std::string(8 * 8 * 3, '\x10'), 8, 8});
  r->prompt = "go";
  r->max_new_tokens = max_new_tokens;
  return r;
}

TEST(ServeEngineTest, StopEndsTheRunningRequestAtAStepAndTheQueuedOnesOnTheEngineThread) {
  Fixture f = MakeEngine(20ms);
  auto running = std::make_shared<RecordingSink>(), queued = std::make_shared<RecordingSink>();
  ASSERT_TRUE(f.engine->Submit(TextRequest(64), running, nullptr).ok());
  ASSERT_TRUE(f.engine->Submit(TextRequest(64), queued, nullptr).ok());
  std::this_thread::sleep_for(100ms);
  const auto t0 = std::chrono::steady_clock::now();
  f.engine->Stop();
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(ms, 1000) << "Stop waited for the whole request";
  EXPECT_EQ(running->ends.load(), 1);
  EXPECT_EQ(running->status.code(), StatusCode::kUnavailable);
  EXPECT_NE(running->status.message().find("the server is shutting down after"), std::string::npos)
      << running->status.message();
  EXPECT_LT(running->tokens.load(), 64);
  EXPECT_EQ(queued->ends.load(), 1);
  EXPECT_EQ(queued->status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(queued->tokens.load(), 0);
  // Every sink call came from one thread, and it was not the one that called Stop().
  std::set<std::thread::id> all = running->threads;
  all.insert(queued->threads.begin(), queued->threads.end());
  EXPECT_EQ(all.size(), 1u);
  EXPECT_EQ(all.count(std::this_thread::get_id()), 0u);
  EXPECT_EQ(f.fake->live_sequences(), 0u);
  f.engine->Stop();  // idempotent
  EXPECT_FALSE(f.engine->Submit(TextRequest(1), running, nullptr).ok());
}

TEST(ServeEngineTest, ExpiredAndCancelledRequestsNeverStart) {
  Fixture f = MakeEngine(20ms);
  auto first = std::make_shared<RecordingSink>(), expired = std::make_shared<RecordingSink>(),
       cancelled = std::make_shared<RecordingSink>();
  ASSERT_TRUE(f.engine->Submit(TextRequest(10), first, nullptr).ok());
  auto late = TextRequest(10);
  late->deadline = std::chrono::steady_clock::now() + 50ms;
  ASSERT_TRUE(f.engine->Submit(late, expired, nullptr).ok());
  auto flag = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(f.engine->Submit(TextRequest(10), cancelled, flag).ok());
  flag->store(true);
  for (int i = 0; i < 300 && cancelled->ends.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(first->ok);
  EXPECT_EQ(expired->status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(expired->status.message().find("it was not started"), std::string::npos);
  EXPECT_EQ(cancelled->status.code(), StatusCode::kCancelled);
  EXPECT_EQ(f.fake->prefills.load(), 1);
  const EngineStats s = f.engine->stats();
  EXPECT_EQ(s.expired_in_queue, 1u);
  EXPECT_EQ(s.cancelled_in_queue, 1u);
  EXPECT_EQ(s.completed, 3u);
  EXPECT_GT(s.mean_service_ms, 150.0);  // 10 steps of 20 ms, measured
}

TEST(ServeEngineTest, AdmissionByBytesLetsOneRequestIntoAnEmptyQueue) {
  EngineOptions o;
  o.max_queued_bytes = 100;  // less than one request
  Fixture f = MakeEngine(20ms, o);
  auto a = std::make_shared<RecordingSink>(), b = std::make_shared<RecordingSink>(),
       c = std::make_shared<RecordingSink>();
  ASSERT_TRUE(f.engine->Submit(TextRequest(10), a, nullptr).ok());
  std::this_thread::sleep_for(50ms);  // a runs; the queue is empty
  ASSERT_TRUE(f.engine->Submit(TextRequest(10), b, nullptr).ok()) << "an empty queue takes any";
  const Status refused = f.engine->Submit(TextRequest(10), c, nullptr);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(f.engine->stats().queued_bytes, TextRequest(10)->HeldBytes());
  EXPECT_EQ(f.engine->stats().rejected_full, 1u);
}

}  // namespace
}  // namespace vlmserve
