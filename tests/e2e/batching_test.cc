// Continuous batching end to end: the real server on loopback.
//   With the tiny checkpoint on the CPU runner: 16 concurrent greedy requests each produce exactly
//   the tokens they produce alone (and the steps held several rows); with a KV cache too small for
//   all of them, preempted-and-recomputed requests produce the same tokens as uninterrupted ones;
//   a prefix-cache hit serves the same text as a server without the cache.
//   With the fake runner: latest_frame_wins supersedes the session's older requests; cancel,
//   deadline and shutdown free every page; a long request does not starve short ones.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_support.h"
#include "tests/support/run_command.h"

namespace vlmserve {
namespace {

using namespace vlmserve::e2e;  // NOLINT: the shared e2e helpers

// 16 different requests: prompts and frames (raw, of different shades) differ.
std::vector<v1::PredictRequest> SixteenRequests(int max_new_tokens) {
  std::vector<v1::PredictRequest> reqs;
  const char* prompts[] = {"What do you see?", "Which button next?", "Describe the frame.",
                           "Where is the goal?"};
  for (int i = 0; i < 16; ++i) {
    v1::PredictRequest r;
    v1::RawImage* raw = r.mutable_grid()->mutable_raw();
    raw->set_width(24);
    raw->set_height(16);
    std::string rgb(24 * 16 * 3, '\0');
    for (size_t p = 0; p < rgb.size(); ++p)
      rgb[p] = static_cast<char>((p * (i + 3) + i * 40) % 251);
    raw->set_rgb(rgb);
    r.set_prompt(std::string(prompts[i % 4]) + " (" + std::to_string(i) + ")");
    r.mutable_options()->set_max_new_tokens(static_cast<uint32_t>(max_new_tokens));
    reqs.push_back(std::move(r));
  }
  return reqs;
}

// Each request alone (one after another), then all at once; the tokens must be the same.
void ExpectConcurrentEqualsAlone(Running& s, const std::vector<v1::PredictRequest>& reqs) {
  std::vector<std::string> alone;
  for (const v1::PredictRequest& r : reqs) {
    PredictOutcome o = s.client->Predict(r);
    ASSERT_TRUE(o.status.ok()) << o.status.error_message();
    alone.push_back(o.result.text());
  }
  std::vector<PredictOutcome> together(reqs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < reqs.size(); ++i) {
    threads.emplace_back([&, i] { together[i] = s.client->Predict(reqs[i]); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(together[i].status.ok()) << i << ": " << together[i].status.error_message();
    EXPECT_EQ(together[i].result.text(), alone[i]) << "request " << i;
  }
}

TEST(BatchingTest, SixteenConcurrentGreedyRequestsEqualEachAlone) {
  Running s = StartServer(TestOptions());
  ExpectConcurrentEqualsAlone(s, SixteenRequests(12));
  const EngineStats st = s.server->serving()->engine->stats();
  std::printf("16 concurrent: %llu steps, %llu rows, at most %llu rows in one step\n",
              static_cast<unsigned long long>(st.steps), static_cast<unsigned long long>(st.rows),
              static_cast<unsigned long long>(st.max_rows));
  EXPECT_GT(st.max_rows, 1u) << "the requests never shared a step";
  EXPECT_TRUE(EngineIdle(*s.server->serving()->engine));  // only the prefix cache holds pages
}

TEST(BatchingTest, PreemptedAndRecomputedEqualsUninterrupted) {
  ServerOptions o = TestOptions();
  o.kv_cache_tokens = 12 * 16;  // 12 pages: room for about two of these requests at once
  o.prefix_cache = false;
  Running s = StartServer(o);
  ExpectConcurrentEqualsAlone(s, SixteenRequests(40));
  const EngineStats st = s.server->serving()->engine->stats();
  std::printf("small KV cache: %llu preemptions\n",
              static_cast<unsigned long long>(st.preemptions));
  EXPECT_GT(st.preemptions, 0u) << "the test should force preemptions";
  EXPECT_TRUE(EngineIdle(*s.server->serving()->engine));
  EXPECT_EQ(s.server->serving()->engine->stats().kv.full_pages_used, 0);  // no prefix cache
}

TEST(BatchingTest, APrefixCacheHitServesWhatAMissServes) {
  // A system prompt long enough for whole pages before the image.
  v1::PredictRequest r = ValidRequest();
  r.set_system_prompt(
      "You play a small game. Look at the last four frames and answer with the next button "
      "to press: up, down, left, right, a or b. Think about walls and the goal.");
  r.mutable_options()->set_max_new_tokens(10);
  ServerOptions on = TestOptions();
  on.max_context_tokens = 400;
  ServerOptions off = on;
  off.prefix_cache = false;
  Running miss = StartServer(off), hit = StartServer(on);
  const PredictOutcome want = miss.client->Predict(r);
  ASSERT_TRUE(want.status.ok()) << want.status.error_message();
  const PredictOutcome first = hit.client->Predict(r), second = hit.client->Predict(r);
  ASSERT_TRUE(first.status.ok() && second.status.ok());
  EXPECT_EQ(first.result.text(), want.result.text());
  EXPECT_EQ(second.result.text(), want.result.text());
  const EngineStats st = hit.server->serving()->engine->stats();
  std::printf("prefix cache: %lld pages cached, %llu pages adopted\n",
              static_cast<long long>(st.kv.cached_pages),
              static_cast<unsigned long long>(st.kv.prefix_hits));
  EXPECT_GT(st.kv.prefix_hits, 0u);
}

TEST(BatchingTest, LatestFrameWinsSupersedesTheSessionsOlderRequests) {
  ServerOptions o = TestOptions();
  FakeServer f = StartFakeWith(o, std::chrono::milliseconds(20));
  v1::PredictRequest older = ValidRequest();
  older.set_session_id("agent-7");
  older.set_request_id("frame-1");
  older.mutable_options()->set_max_new_tokens(60);  // ≈ 1.2 s
  v1::PredictRequest other = older;
  other.set_session_id("agent-8");  // another agent: untouched
  other.set_request_id("frame-x");
  PredictOutcome a, b;
  std::thread ta([&] { a = f.running.client->Predict(older); });
  std::thread tb([&] { b = f.running.client->Predict(other); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  v1::PredictRequest newer = older;
  newer.set_request_id("frame-2");
  newer.mutable_options()->set_max_new_tokens(3);
  newer.mutable_options()->set_latest_frame_wins(true);
  const PredictOutcome c = f.running.client->Predict(newer);
  ta.join();
  tb.join();
  EXPECT_TRUE(c.status.ok()) << c.status.error_message();
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_NE(a.status.error_message().find(
                "superseded by the newer request frame-2 of session agent-7 (latest_frame_wins)"),
            std::string::npos)
      << a.status.error_message();
  EXPECT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(f.running.server->serving()->engine->stats().superseded, 1u);
  EXPECT_TRUE(EngineIdle(f));
}

TEST(BatchingTest, RequestsShareStepsAndEveryEndFreesEverything) {
  ServerOptions o = TestOptions();
  FakeServer f = StartFakeWith(o, std::chrono::milliseconds(10));
  v1::PredictRequest r = ValidRequest();
  r.mutable_options()->set_max_new_tokens(30);
  std::vector<PredictOutcome> outs(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      v1::PredictRequest mine = r;
      if (i == 1) mine.mutable_options()->set_max_new_tokens(64);
      outs[i] = f.running.client->Predict(
          mine, {}, i == 2 ? std::chrono::milliseconds(120) : std::chrono::minutes(1));
    });
  }
  // Cancel one mid-way through a raw channel: the others go on.
  grpc::ClientContext ctx;
  auto stub = v1::VlmService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(f.running.server->port()), grpc::InsecureChannelCredentials()));
  auto reader = stub->Predict(&ctx, r);
  v1::PredictResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (auto& t : threads) t.join();
  int ok = 0;
  for (int i = 0; i < 8; ++i) ok += outs[i].status.ok();
  EXPECT_EQ(ok, 7);
  EXPECT_EQ(outs[2].status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(EngineIdle(f));
  const EngineStats st = f.running.server->serving()->engine->stats();
  EXPECT_GT(st.max_rows, 1u);
  EXPECT_EQ(f.running.server->serving()->engine->metrics().batch_rows.Get().count, st.steps);
}

// Shutdown with requests running and queued frees everything and ends each one.
TEST(BatchingTest, ShutdownEndsRunningAndQueuedRequests) {
  ServerOptions o = TestOptions();
  o.max_running = 2;
  FakeServer f = StartFakeWith(o, std::chrono::milliseconds(20));
  v1::PredictRequest r = ValidRequest();
  r.mutable_options()->set_max_new_tokens(64);
  std::vector<PredictOutcome> outs(5);
  std::vector<std::thread> threads;
  for (int i = 0; i < 5; ++i)
    threads.emplace_back([&, i] { outs[i] = f.running.client->Predict(r); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  std::shared_ptr<ServingModel> serving = f.running.server->serving();  // keep the engine to look
  f.running.server->Shutdown(std::chrono::milliseconds(0));
  for (auto& t : threads) t.join();
  for (const PredictOutcome& o2 : outs) EXPECT_FALSE(o2.status.ok());
  const EngineStats st = serving->engine->stats();
  EXPECT_EQ(st.kv.live_sequences, 0u);
  EXPECT_EQ(st.kv.full_pages_used + st.kv.sliding_pages_used, 0);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_EQ(st.running, 0u);
}

// vlmserve-bench against the real server: closed and open loop, JSON out, statuses counted.
TEST(BenchToolTest, ClosedAndOpenLoopReportTheirNumbers) {
  Running s = StartServer(TestOptions());
  const std::string base = std::string(VLMSERVE_BENCH_BIN) +
                           " --server 127.0.0.1:" + std::to_string(s.server->port()) +
                           " --max-new-tokens 4 --output-mode text --json ";
  const testing::CommandResult closed =
      testing::RunCommand(base + "--synthetic -c 4 -n 12 --connections 2");
  ASSERT_EQ(closed.exit_code, 0) << closed.out;
  const nlohmann::json c = nlohmann::json::parse(closed.out);
  EXPECT_EQ(c["requests"], 12);
  EXPECT_EQ(c["status_codes"]["0"], 12);
  EXPECT_GT(c["ok_rps"].get<double>(), 0);
  EXPECT_GT(c["time_to_first_token_ms"]["p50"].get<double>(), 0);
  EXPECT_GE(c["latency_ms"]["p99"].get<double>(), c["latency_ms"]["p50"].get<double>());
  const testing::CommandResult open = testing::RunCommand(
      base + "--grid " + FixturePath(kModel + "/image0.png") + " --rps 20 --duration 0.5");
  ASSERT_EQ(open.exit_code, 0) << open.out;
  const nlohmann::json o = nlohmann::json::parse(open.out);
  EXPECT_EQ(o["mode"], "open");
  EXPECT_EQ(o["requests"], 10);
  EXPECT_EQ(testing::RunCommand(base + "--synthetic").exit_code, 2);  // no loop given
}

// Its defaults ask for actions with room for them: every request succeeds without flags beyond the
// loop. The built-in model's shortest action is 25 tokens: a 16-token default once failed every
// action request with INVALID_ARGUMENT.
TEST(BenchToolTest, DefaultActionModeRequestsSucceed) {
  ServerOptions o;  // the server's defaults, on its built-in model
  o.port = 0;
  o.model_dir = testing::SourceDir() + "/models/demo";
  Running s = StartServer(o);
  const testing::CommandResult r = testing::RunCommand(
      std::string(VLMSERVE_BENCH_BIN) + " --server 127.0.0.1:" + std::to_string(s.server->port()) +
      " --json --synthetic -c 2 -n 4");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json c = nlohmann::json::parse(r.out);
  EXPECT_EQ(c["status_codes"]["0"], 4) << r.out;
  EXPECT_GT(c["tokens_per_request"]["forced"].get<double>(), 0) << r.out;  // action mode
}

}  // namespace
}  // namespace vlmserve
