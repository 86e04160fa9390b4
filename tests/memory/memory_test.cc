// Memory bounds of the real server under hostile requests, measured as the growth of the server
// process's peak RSS (VmHWM) — on a plain build only (tests/CMakeLists.txt), since ASan's shadow
// memory and quarantine make RSS meaningless. The server runs as a child process on the tiny
// built-in model; each case compares the peak after warm-up and one valid request with the peak
// after the hostile ones.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "client/client.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using vlmserve::testing::FixturePath;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The server binary as a child process.
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> extra = {}) {
    dir_ = std::filesystem::temp_directory_path() /
           ("vlmserve_mem_" + std::to_string(::getpid()) + "_" + std::to_string(++counter_));
    std::filesystem::create_directories(dir_);
    const std::string port_file = (dir_ / "port").string(), log = (dir_ / "log").string();
    std::vector<std::string> args = {VLMSERVE_SERVER_BIN,
                                     "--port",
                                     "0",
                                     "--port-file",
                                     port_file,
                                     "--model",
                                     FixturePath("decoder/pool16_six_layers")};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      FILE* f = std::freopen(log.c_str(), "w", stdout);
      (void)f;
      ::dup2(::fileno(stdout), 2);
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
    for (int i = 0; i < 600; ++i) {  // up to 30 s to bind
      const std::string p = ReadFile(port_file);
      if (!p.empty() && p.back() == '\n') {
        port_ = std::stoi(p);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    client_ = std::make_unique<VlmClient>("127.0.0.1:" + std::to_string(port_), 1u << 30);
    for (int i = 0; i < 600 && client_->Health() != "SERVING"; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::filesystem::remove_all(dir_);
  }

  VlmClient& client() { return *client_; }
  int port() const { return port_; }
  std::string log() const { return ReadFile((dir_ / "log").string()); }

  // Peak resident set of the server process so far, in KiB.
  long PeakRssKb() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::unique_ptr<VlmClient> client_;
};

v1::PredictRequest ValidRequest() {
  v1::PredictRequest r;
  r.mutable_grid()->set_encoded(ReadFile(FixturePath("decoder/pool16_six_layers/image0.png")));
  r.set_prompt("What do you see?");
  r.mutable_options()->set_max_new_tokens(4);
  r.mutable_options()->set_output_mode(v1::OUTPUT_MODE_TEXT);  // 4 tokens: no room for an action
  return r;
}

constexpr long kBoundKb = 64 * 1024;  // issue #15: peak RSS growth < 64 MiB

// 128 MiB of zeros compress to ~128 KiB: gRPC used to inflate it whole (and parse a copy) before
// any limit applied. Compressed requests are now refused before inflation.
TEST(MemoryTest, CompressionBombDoesNotGrowThePeak) {
  ServerProcess s;
  ASSERT_EQ(s.client().Health(), "SERVING") << s.log();
  ASSERT_TRUE(s.client().Predict(ValidRequest()).status.ok());
  const long before = s.PeakRssKb();
  ASSERT_GT(before, 0);
  {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(s.port()),
                                             grpc::InsecureChannelCredentials(), args);
    auto stub = v1::VlmService::NewStub(channel);
    v1::PredictRequest bomb = ValidRequest();
    bomb.set_system_prompt(std::string(128u << 20, '\0'));
    for (int i = 0; i < 2; ++i) {
      grpc::ClientContext ctx;
      ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      auto reader = stub->Predict(&ctx, bomb);
      v1::PredictResponse msg;
      while (reader->Read(&msg)) {
      }
      const grpc::Status st = reader->Finish();
      EXPECT_EQ(st.error_code(), grpc::StatusCode::UNIMPLEMENTED) << st.error_message();
    }
  }
  const long growth = s.PeakRssKb() - before;
  std::printf("gzip bomb (128 MiB inflated, twice): server peak RSS %ld -> %ld KiB (+%ld KiB)\n",
              before, before + growth, growth);
  EXPECT_LT(growth, kBoundKb);
  EXPECT_EQ(s.client().Health(), "SERVING");
  EXPECT_TRUE(s.client().Predict(ValidRequest()).status.ok());
}

// Keys on: a flood of calls without a key (1 MiB each, 8 at a time) is refused with
// UNAUTHENTICATED before parsing or model work; the peak stays bounded and the time short, and a
// keyed call still works.
TEST(MemoryTest, UnauthenticatedFloodIsCheapAndBounded) {
  const std::string keys = (std::filesystem::temp_directory_path() /
                            ("vlmserve_mem_keys_" + std::to_string(::getpid())))
                               .string();
  const std::string key = "mem-test-key-0123456789abcdef";
  std::ofstream(keys) << "agent:" << key << "\n";
  std::filesystem::permissions(keys, std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write);
  ServerProcess s({"--api-key-file", keys});
  VlmClient keyed("127.0.0.1:" + std::to_string(s.port()), 1u << 30, false, {"", "", "", key});
  ASSERT_EQ(s.client().Health(), "SERVING") << s.log();
  ASSERT_TRUE(keyed.Predict(ValidRequest()).status.ok());
  const long before = s.PeakRssKb();
  v1::PredictRequest big = ValidRequest();
  big.mutable_grid()->set_encoded(std::string(1u << 20, 'x'));
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<int> refused{0};
  std::mutex other_mu;
  std::string other;  // the first answer that was not UNAUTHENTICATED, for the failure message
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      VlmClient c("127.0.0.1:" + std::to_string(s.port()), 1u << 30, true);
      // Each client's own connection is up before its flood (health needs no key): a connect
      // attempt that fails once puts a channel in backoff, and every call of the 0.2 s flood
      // would then fail UNAVAILABLE without reaching the server — seen once in CI (350 of 400).
      for (int k = 0; k < 100 && c.Health() != "SERVING"; ++k) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      for (int i = 0; i < 50; ++i) {
        const grpc::Status st = c.Predict(big).status;
        if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
          ++refused;
        } else {
          std::lock_guard<std::mutex> lock(other_mu);
          if (other.empty()) other = std::to_string(st.error_code()) + " " + st.error_message();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long growth = s.PeakRssKb() - before;
  std::printf("400 unauthenticated 1 MiB calls: %.2f s, server peak RSS +%ld KiB\n", secs, growth);
  EXPECT_EQ(refused.load(), 400) << "first other answer: " << other;
  EXPECT_LT(growth, kBoundKb);
  EXPECT_LT(secs, 60.0);
  EXPECT_TRUE(keyed.Predict(ValidRequest()).status.ok());
  std::filesystem::remove(keys);
}

// 41-byte PNGs whose ancillary chunk declares ~2 GiB, four per request, every chunk kind: libpng
// used to allocate the declared length for each.
TEST(MemoryTest, PngChunkBombsDoNotGrowThePeak) {
  ServerProcess s;
  ASSERT_EQ(s.client().Health(), "SERVING") << s.log();
  ASSERT_TRUE(s.client().Predict(ValidRequest()).status.ok());
  const long before = s.PeakRssKb();
  const auto t0 = std::chrono::steady_clock::now();
  for (const char* chunk : {"tEXt", "zTXt", "iTXt", "sPLT", "pCAL", "sCAL", "iCCP"}) {
    v1::PredictRequest r = ValidRequest();
    r.clear_grid();
    const std::string png =
        ReadFile(FixturePath(std::string("images/bad/png_") + chunk + "_2g.png"));
    ASSERT_EQ(png.size(), 41u);
    for (int i = 0; i < 4; ++i) r.add_frames()->set_encoded(png);
    const PredictOutcome out = s.client().Predict(r);
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << chunk;
  }
  const double s_taken =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long growth = s.PeakRssKb() - before;
  std::printf("7 PNG chunk bombs x 4 frames: server peak RSS +%ld KiB, %.3f s in all\n", growth,
              s_taken);
  EXPECT_LT(growth, kBoundKb);
  EXPECT_EQ(s.client().Health(), "SERVING");
  EXPECT_TRUE(s.client().Predict(ValidRequest()).status.ok());
}

// Admission by bytes: while one request runs (the token-delay hook holds it), 40 requests of
// 8 MiB each arrive; queued requests may hold 32 MiB together, so the peak stays near that
// however many are sent (max_queue, 64, would let all 40 wait: 320 MiB).
TEST(MemoryTest, QueuedRequestsAreBoundedByBytes) {
  // One request at a time (--max-running 1): the rest wait in the queue, which is what is bounded.
  ServerProcess s(
      {"--test-token-delay-ms", "200", "--max-queued-bytes", "33554432", "--max-running", "1"});
  ASSERT_EQ(s.client().Health(), "SERVING") << s.log();
  ASSERT_TRUE(s.client().Predict(ValidRequest()).status.ok());
  const long before = s.PeakRssKb();
  v1::PredictRequest hold = ValidRequest();
  hold.mutable_options()->set_max_new_tokens(15);  // 3 s
  PredictOutcome held;
  std::thread running([&] { held = s.client().Predict(hold); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  v1::PredictRequest big = ValidRequest();
  big.mutable_options()->set_max_new_tokens(1);
  big.clear_grid();
  v1::RawImage* raw = big.mutable_grid()->mutable_raw();
  raw->set_width(1632);
  raw->set_height(1714);  // 8.0 MiB of RGB
  raw->set_rgb(std::string(size_t{1632} * 1714 * 3, '\x30'));
  std::atomic<int> refused{0};
  std::vector<std::thread> senders;
  // One every 25 ms, each on its own thread (accepted ones stay waiting): what is measured is
  // what the queue holds, not gRPC's receive buffers for many messages arriving at the same
  // instant (those are bounded by --max-streams-per-connection x --max-message-bytes).
  for (int i = 0; i < 40; ++i) {
    senders.emplace_back([&] {
      const PredictOutcome o = s.client().Predict(big, {}, std::chrono::seconds(120));
      refused += o.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  for (auto& t : senders) t.join();
  running.join();
  const long growth = s.PeakRssKb() - before;
  std::printf(
      "40 x 8 MiB requests behind a held one, --max-queued-bytes 32 MiB: %d "
      "refused, server peak RSS +%ld KiB\n",
      refused.load(), growth);
  EXPECT_GE(refused.load(), 30);  // 4 fit in 32 MiB (more only if some finished meanwhile)
  // 32 MiB queued + requests being parsed at that moment + what preprocessing one of them takes:
  // far under the 320 MiB sent (which is what queueing by count alone would hold).
  EXPECT_LT(growth, 160 * 1024);
  EXPECT_TRUE(held.status.ok()) << held.status.error_message();
}

}  // namespace
}  // namespace vlmserve
