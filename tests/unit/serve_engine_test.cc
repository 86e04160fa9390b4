// ServeEngine's threading contract (engine/README.md) with the fake runner: sinks are called on
// the engine thread only; Stop() ends the running request at a step boundary and the queued ones,
// each with exactly one OnError(UNAVAILABLE); deadlines and cancellation before the start; bytes
// admission.
#include "engine/serve_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <thread>

#include "model/kv_sizing.h"
#include "model/model_dir.h"
#include "model/weights/model_stats.h"
#include "tests/support/fake_runner.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using namespace std::chrono_literals;

// Records every event and the thread it came on. The outcome is written before `ends` is
// incremented, so a test that has seen `ends` may read it (TSan checks this).
class RecordingSink : public ResponseSink {
 public:
  void OnDelta(OutputDelta d) override {
    Record();
    tokens += static_cast<int>(d.ids.size());
  }
  void OnResult(ServeResult) override {
    Record();
    ok = true;
    ++ends;
  }
  void OnError(Status s) override {
    Record();
    status = std::move(s);
    ++ends;
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

// Waits (up to 5 s) until `sink` has streamed a token: its request is running.
bool WaitForTokens(const RecordingSink& sink) {
  for (int i = 0; i < 500 && sink.tokens.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  return sink.tokens.load() > 0;
}

struct Fixture {
  testing::FakeModelRunner* fake = nullptr;  // owned by the engine
  std::vector<int32_t> stop_ids;
  std::unique_ptr<ServeEngine> engine;
};

// An engine over the tiny model's directory with a fake runner whose tokens are first_token,
// first_token + 1, ... (cycling through 5).
// One request at a time unless a test says otherwise (max_running 1).
EngineOptions Serial() {
  EngineOptions o;
  o.max_running = 1;
  return o;
}

Fixture MakeEngine(std::chrono::milliseconds delay, EngineOptions options = Serial(),
                   bool start = true, int32_t first_token = 300) {
  Fixture f;
  auto model = ModelDir::Load(testing::FixturePath("decoder/pool16_six_layers"));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  auto owned = std::make_unique<ModelDir>(std::move(model).value());
  f.stop_ids = owned->generation.stop_ids;
  auto fake = std::make_unique<testing::FakeModelRunner>(owned->config, delay, first_token);
  f.fake = fake.get();
  auto engine = ServeEngine::Create(std::move(owned), std::move(fake), options);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  f.engine = std::move(engine).value();
  if (start) f.engine->Start();
  return f;
}

std::shared_ptr<ServeRequest> TextRequest(int max_new_tokens) {
  auto r = std::make_shared<ServeRequest>();
  r->request_id = "t";
  r->images.frames.push_back({true, std::string(8 * 8 * 3, '\x10'), 8, 8, ""});
  r->prompt = "go";
  r->max_new_tokens = max_new_tokens;
  r->output_mode = OutputMode::kText;  // the fake runner's tokens are no action
  return r;
}

TEST(ServeEngineTest, StopEndsTheRunningRequestAtAStepAndTheQueuedOnesOnTheEngineThread) {
  Fixture f = MakeEngine(20ms);
  auto running = std::make_shared<RecordingSink>(), queued = std::make_shared<RecordingSink>();
  ASSERT_TRUE(f.engine->Submit(TextRequest(64), running, nullptr).ok());
  // Requests are prepared on workers in parallel: wait until the first one runs, so that the
  // second is the one that waits (max_running 1).
  ASSERT_TRUE(WaitForTokens(*running));
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
  EXPECT_EQ(f.engine->stats().kv.live_sequences, 0u);
  EXPECT_EQ(f.engine->stats().kv.full_pages_used + f.engine->stats().kv.sliding_pages_used, 0);
  f.engine->Stop();  // idempotent
  EXPECT_FALSE(f.engine->Submit(TextRequest(1), running, nullptr).ok());
}

// reliability.md G10: the runner's device fails for good (a sticky CUDA error). The running
// request and the queued one end with UNAVAILABLE saying so, on the engine thread; new requests
// are refused; on_fatal is called once, after every request has been answered.
TEST(ServeEngineTest, ARunnerThatFailsForGoodEndsEverythingAndCallsOnFatalOnce) {
  EngineOptions o = Serial();
  std::atomic<int> fatal_calls{0};
  std::shared_ptr<RecordingSink> running = std::make_shared<RecordingSink>(),
                                 queued = std::make_shared<RecordingSink>();
  std::atomic<int> ended_before_fatal{-1};
  Status fatal;
  o.on_fatal = [&](const Status& s) {
    ended_before_fatal = running->ends.load() + queued->ends.load();
    fatal = s;
    ++fatal_calls;
  };
  Fixture f = MakeEngine(20ms, o);
  ASSERT_TRUE(f.engine->Submit(TextRequest(64), running, nullptr).ok());
  ASSERT_TRUE(WaitForTokens(*running));
  ASSERT_TRUE(f.engine->Submit(TextRequest(64), queued, nullptr).ok());
  f.fake->broken = true;  // the next step fails, and the runner reports its device gone
  for (int i = 0; i < 500 && fatal_calls.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(fatal_calls.load(), 1);
  EXPECT_EQ(ended_before_fatal.load(), 2) << "on_fatal came before every request was answered";
  EXPECT_NE(fatal.message().find("the device is gone"), std::string::npos) << fatal.ToString();
  for (const auto& sink : {running, queued}) {
    EXPECT_EQ(sink->ends.load(), 1);
    EXPECT_EQ(sink->status.code(), StatusCode::kUnavailable) << sink->status.ToString();
  }
  for (const auto& sink : {running, queued}) {
    EXPECT_NE(sink->status.message().find("the model runner failed"), std::string::npos)
        << sink->status.message();
  }
  auto late = std::make_shared<RecordingSink>();
  const Status refused = f.engine->Submit(TextRequest(4), late, nullptr);
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("the server is restarting"), std::string::npos);
  f.engine->Stop();
  EXPECT_EQ(fatal_calls.load(), 1);
}

TEST(ServeEngineTest, ExpiredAndCancelledRequestsNeverStart) {
  Fixture f = MakeEngine(20ms);
  auto first = std::make_shared<RecordingSink>(), expired = std::make_shared<RecordingSink>(),
       cancelled = std::make_shared<RecordingSink>();
  ASSERT_TRUE(f.engine->Submit(TextRequest(10), first, nullptr).ok());
  ASSERT_TRUE(WaitForTokens(*first));  // it runs; the next ones wait behind it (max_running 1)
  auto late = TextRequest(10);
  late->deadline = std::chrono::steady_clock::now() + 50ms;
  ASSERT_TRUE(f.engine->Submit(late, expired, nullptr).ok());
  auto flag = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(f.engine->Submit(TextRequest(10), cancelled, flag).ok());
  flag->store(true);
  for (int i = 0; i < 300 && first->ends + expired->ends + cancelled->ends < 3; ++i) {
    std::this_thread::sleep_for(10ms);
  }
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
  EXPECT_EQ(s.kv.live_sequences, 0u);
  EXPECT_EQ(s.kv.full_pages_used + s.kv.sliding_pages_used, 0);
}

TEST(ServeEngineTest, AdmissionByBytesLetsOneRequestIntoAnEmptyQueue) {
  EngineOptions o = Serial();
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

// The one token loop: a stop id ends generation (and is not output), max_new_tokens ends it
// otherwise; the sequence is released either way; bad sampling parameters are refused.
TEST(ServeEngineTest, RunNowStopsAtAStopIdOrTheLengthAndReleases) {
  {
    Fixture f = MakeEngine(0ms, Serial(), /*start=*/false);
    ASSERT_FALSE(f.stop_ids.empty());
    auto r = f.engine->RunNow(*TextRequest(3));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, (std::vector<int32_t>{300, 301, 302}));
    EXPECT_EQ(r->finish, FinishReason::kLength);
    EXPECT_EQ(f.engine->stats().kv.live_sequences, 0u);
  }
  {
    Fixture f0 = MakeEngine(0ms, Serial(), false);
    const int32_t stop = *std::max_element(f0.stop_ids.begin(), f0.stop_ids.end());
    ASSERT_GE(stop, 2);  // the fake's tokens stop - 2, stop - 1, stop must be ids
    Fixture f = MakeEngine(0ms, Serial(), /*start=*/false, /*first_token=*/stop - 2);
    struct Collect : ResponseSink {
      std::vector<int32_t> ids;
      void OnDelta(OutputDelta d) override { ids.insert(ids.end(), d.ids.begin(), d.ids.end()); }
      void OnResult(ServeResult) override {}
      void OnError(Status) override {}
    } sink;
    auto r = f.engine->RunNow(*TextRequest(10), &sink);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, (std::vector<int32_t>{stop - 2, stop - 1}));
    EXPECT_EQ(r->finish, FinishReason::kStop);
    EXPECT_EQ(sink.ids, r->tokens);  // streamed as generated, the stop id never
    EXPECT_EQ(f.engine->stats().kv.live_sequences, 0u);
    auto bad = TextRequest(3);
    bad->sampling.temperature = -1;
    EXPECT_EQ(f.engine->RunNow(*bad).status().code(), StatusCode::kInvalidArgument);
  }
}

// A runner that only queues vision (CUDA: a second stream) has its batches' device time reported
// as the vision phase, not the time the call took to queue them; a synchronous one has the call's.
TEST(ServeEngineTest, AsyncVisionReportsTheDeviceTime) {
  {
    Fixture f = MakeEngine(0ms, Serial(), /*start=*/false);
    f.fake->async_vision_us = 4321;
    auto r = f.engine->RunNow(*TextRequest(2));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->timings.vision_us, 4321);
    EXPECT_EQ(f.fake->live_image_batches(), 0u);
  }
  {
    Fixture f = MakeEngine(0ms, Serial(), /*start=*/false);
    auto r = f.engine->RunNow(*TextRequest(2));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LT(r->timings.vision_us, 4321);  // the fake's EncodeImages takes ~nothing
  }
}

// On the real CPU runner: greedy decoding of 3 tokens is the prefix of 12, and the runner holds no
// sequence afterwards.
TEST(ServeEngineTest, GreedyRunsOnTheCpuRunnerArePrefixes) {
  auto engine = ServeEngine::Load(testing::FixturePath("decoder/pool16_six_layers"), "cpu", {});
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  EXPECT_EQ((*engine)->info().device, "cpu");
  EXPECT_EQ((*engine)->info().model_name, "pool16_six_layers");
  auto short_run = (*engine)->RunNow(*TextRequest(3));
  auto long_run = (*engine)->RunNow(*TextRequest(12));
  ASSERT_TRUE(short_run.ok() && long_run.ok());
  ASSERT_GE(long_run->tokens.size(), 3u);
  EXPECT_EQ(std::vector<int32_t>(long_run->tokens.begin(), long_run->tokens.begin() + 3),
            short_run->tokens);
}

// The KV cache's size from --kv-cache-bytes on the real CPU runner (fp32 pages), reported with the
// weights for the start-up log; too small for one image request is one clear error at load.
TEST(ServeEngineTest, KvCacheSizedByBytesIsReportedAndTooSmallFailsAtLoad) {
  const std::string dir = testing::FixturePath("decoder/pool16_six_layers");
  auto model = ModelDir::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const uint64_t page = KvPageBytes(model->config.text, 4);
  EngineOptions o;
  o.kv_cache_bytes = static_cast<int64_t>(40 * page + page / 2);  // 40 whole pages fit
  auto engine = ServeEngine::Load(dir, "cpu", o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const EngineModelInfo& info = (*engine)->info();
  EXPECT_EQ(info.kv_pages, 40);
  EXPECT_EQ(info.memory.kv_cache_bytes, 40 * page);
  EXPECT_NE(info.memory.kv_sizing.find("--kv-cache-bytes"), std::string::npos);
  EXPECT_EQ(info.memory.weights_bytes, CountParameters(model->config)->total * 4);
  EXPECT_LE(info.max_context_tokens, 40 * 16);

  o.kv_cache_bytes = static_cast<int64_t>(page);  // 16 tokens: not even one image's soft tokens
  auto small = ServeEngine::Load(dir, "cpu", o);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(small.status().message().find("raise --kv-cache-bytes"), std::string::npos)
      << small.status().message();
}

// Many threads submit and cancel at once while the engine batches (the fake runner): every request
// ends exactly once, on the engine thread, and nothing is left behind. Run under TSan in CI.
TEST(EngineConcurrencyTest, SubmittersCancellersAndTheEngineThread) {
  EngineOptions o;
  o.max_running = 8;
  o.preprocess_threads = 3;
  Fixture f = MakeEngine(1ms, o);
  constexpr int kThreads = 6, kEach = 12;
  std::vector<std::shared_ptr<RecordingSink>> sinks(kThreads * kEach);
  std::vector<std::shared_ptr<std::atomic<bool>>> flags(sinks.size());
  std::atomic<int> refused{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const size_t k = static_cast<size_t>(t * kEach + i);
        sinks[k] = std::make_shared<RecordingSink>();
        flags[k] = std::make_shared<std::atomic<bool>>(false);
        auto r = TextRequest(5 + (i % 7));
        r->session_id = "s" + std::to_string(t);
        r->latest_frame_wins = i % 5 == 4;
        if (!f.engine->Submit(r, sinks[k], flags[k]).ok()) ++refused;
        if (i % 3 == 0) {
          flags[k]->store(true);
          f.engine->Wake();
        }
      }
    });
  }
  for (auto& t : submitters) t.join();
  for (int i = 0; i < 500; ++i) {
    int ended = 0;
    for (const auto& s : sinks) ended += s->ends.load();
    if (ended + refused.load() == static_cast<int>(sinks.size())) break;
    std::this_thread::sleep_for(10ms);
  }
  std::set<std::thread::id> threads;
  int ended = 0;
  for (const auto& s : sinks) {
    EXPECT_LE(s->ends.load(), 1);
    ended += s->ends.load();
    std::lock_guard<std::mutex> lock(s->mu);
    threads.insert(s->threads.begin(), s->threads.end());
  }
  EXPECT_EQ(ended + refused.load(), static_cast<int>(sinks.size()));
  EXPECT_LE(threads.size(), 1u);  // the engine thread only
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
  f.engine->Stop();
  const EngineStats st = f.engine->stats();
  EXPECT_EQ(st.kv.live_sequences, 0u);
  EXPECT_EQ(st.kv.full_pages_used + st.kv.sliding_pages_used, st.kv.cached_pages * 2);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_EQ(st.running, 0u);
}

}  // namespace
}  // namespace vlmserve
