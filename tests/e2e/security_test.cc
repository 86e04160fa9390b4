// Security on loopback with the real tiny model: TLS and mTLS with certificates made now by
// Debian's openssl (a CA, a server certificate for localhost/127.0.0.1, a client certificate, an
// expired one, one from another CA), API keys (missing, wrong, one byte off → UNAUTHENTICATED with
// no engine work), per-client concurrency and rate limits (one client refused, the other not),
// sessions scoped per key, the plaintext health-only port, reloads while a stream runs, and the
// JSON log line.
#include <spdlog/details/log_msg.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "server/json_log.h"
#include "server/tls.h"
#include "tests/e2e/e2e_support.h"
#include "tests/support/run_command.h"

namespace vlmserve {
namespace {

using namespace vlmserve::e2e;  // NOLINT: the shared e2e helpers
using namespace std::chrono_literals;

// Certificates for the whole test binary, made once (EC keys: fast).
struct Pki {
  std::string dir;
  std::string Path(const std::string& f) const { return dir + "/" + f; }
};

const Pki& Certificates() {
  static const Pki pki = [] {
    Pki p;
    p.dir = ::testing::TempDir() + "/vlmserve-pki-" + std::to_string(::getpid());
    std::filesystem::create_directories(p.dir);
    const std::string key = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string sign = "openssl x509 -req -CAcreateserial";
    const std::string script =
        "cd " + p.dir + " && set -e && " +
        // Two CAs.
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key "
        "-out ca.pem -days 2 -subj /CN=vlmserve-test-ca && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "
        "other_ca.key -out other_ca.pem -days 2 -subj /CN=other-ca && "
        // The server: localhost and 127.0.0.1; a valid and an expired certificate.
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san.ext && " +
        key + " -keyout server.key -out server.csr -subj /CN=localhost && " + sign +
        " -in server.csr -CA ca.pem -CAkey ca.key -out server.pem -days 2 -extfile san.ext && " +
        sign +
        " -in server.csr -CA ca.pem -CAkey ca.key -out expired.pem -days -1 -extfile san.ext && " +
        sign +
        " -in server.csr -CA other_ca.pem -CAkey other_ca.key -out server_other.pem -days 2 "
        "-extfile san.ext && " +
        // A client: signed by our CA, by the other CA, and expired.
        key + " -keyout client.key -out client.csr -subj /CN=agent-1 && " + sign +
        " -in client.csr -CA ca.pem -CAkey ca.key -out client.pem -days 2 && " + sign +
        " -in client.csr -CA other_ca.pem -CAkey other_ca.key -out client_other.pem -days 2 && " +
        sign +
        " -in client.csr -CA ca.pem -CAkey ca.key -out client_expired.pem -days -1 && "
        "echo 'not a certificate' > garbage.pem";
    const testing::CommandResult r = testing::RunCommand("(" + script + ") 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return p;
  }();
  return pki;
}

std::string WriteKeys(const std::string& name, const std::string& text, mode_t mode = 0600) {
  const std::string path = Certificates().Path(name);
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
  return path;
}

const char kKeyA[] = "aaaaaaaaaaaaaaaaaaaaaaaa-key-of-agent-a";
const char kKeyB[] = "bbbbbbbbbbbbbbbbbbbbbbbb-key-of-agent-b";

v1::PredictRequest Small() {
  v1::PredictRequest r = ValidRequest();  // text mode
  r.mutable_options()->set_max_new_tokens(2);
  return r;
}

std::unique_ptr<VlmClient> Client(const Running& s, ClientSecurity sec) {
  const std::string host = sec.tls() ? "localhost" : "127.0.0.1";
  return std::make_unique<VlmClient>(host + ":" + std::to_string(s.server->port()), 64u << 20,
                                     /*own_connection=*/true, std::move(sec));
}

TEST(SecurityTest, BadTlsMaterialIsOneClearErrorEach) {
  const Pki& p = Certificates();
  const std::pair<TlsFiles, const char*> cases[] = {
      {{p.Path("expired.pem"), p.Path("server.key"), ""}, "has expired"},
      {{p.Path("server.pem"), p.Path("client.key"), ""}, "does not belong to the certificate"},
      {{p.Path("missing.pem"), p.Path("server.key"), ""}, "missing.pem: no such file"},
      {{p.Path("garbage.pem"), p.Path("server.key"), ""}, "holds no PEM certificate"},
      {{p.Path("server.pem"), p.Path("garbage.pem"), ""}, "holds no PEM private key"},
      {{p.Path("server.pem"), p.Path("server.key"), p.Path("garbage.pem")}, "--tls-client-ca"},
      {{p.Path("server.pem"), "", ""}, "go together"},
  };
  for (const auto& [files, want] : cases) {
    const Status s = CheckTlsFiles(files);
    EXPECT_FALSE(s.ok()) << want;
    EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
  }
  EXPECT_TRUE(CheckTlsFiles({p.Path("server.pem"), p.Path("server.key"), p.Path("ca.pem")}).ok());
  ServerOptions o = TestOptions();
  o.tls_cert = p.Path("expired.pem");
  o.tls_key = p.Path("server.key");
  auto refused = VlmServer::Start(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("has expired"), std::string::npos);
}

TEST(SecurityTest, TlsAndMutualTls) {
  const Pki& p = Certificates();
  ServerOptions o = TestOptions();
  o.tls_cert = p.Path("server.pem");
  o.tls_key = p.Path("server.key");
  Running tls = StartServer(o);
  EXPECT_TRUE(Client(tls, {p.Path("ca.pem"), "", "", ""})->Predict(Small()).status.ok());
  EXPECT_FALSE(Client(tls, {})->Predict(Small()).status.ok()) << "plaintext to a TLS port";
  EXPECT_FALSE(Client(tls, {p.Path("other_ca.pem"), "", "", ""})->Predict(Small()).status.ok())
      << "a server certificate the client's CA did not sign";

  o.tls_client_ca = p.Path("ca.pem");
  Running mtls = StartServer(o);
  const PredictOutcome good =
      Client(mtls, {p.Path("ca.pem"), p.Path("client.pem"), p.Path("client.key"), ""})
          ->Predict(Small());
  EXPECT_TRUE(good.status.ok()) << good.status.error_message();
  EXPECT_FALSE(Client(mtls, {p.Path("ca.pem"), "", "", ""})->Predict(Small()).status.ok())
      << "no client certificate";
  EXPECT_FALSE(
      Client(mtls, {p.Path("ca.pem"), p.Path("client_other.pem"), p.Path("client.key"), ""})
          ->Predict(Small())
          .status.ok())
      << "a client certificate from another CA";
  EXPECT_FALSE(
      Client(mtls, {p.Path("ca.pem"), p.Path("client_expired.pem"), p.Path("client.key"), ""})
          ->Predict(Small())
          .status.ok())
      << "an expired client certificate";
}

TEST(SecurityTest, ApiKeysRefuseBeforeAnyWork) {
  ServerOptions o = TestOptions();
  o.api_key_file =
      WriteKeys("keys", std::string("# agents\nagent-a:") + kKeyA + "\n" + kKeyB + "\n");
  Running s = StartServer(o);
  const EngineStats before = s.server->serving()->engine->stats();
  std::string off_by_one = kKeyA;
  off_by_one.back() = 'X';
  for (const std::string& key : {std::string(), std::string("wrong-key-wrong-key-1"), off_by_one}) {
    const PredictOutcome out = Client(s, {"", "", "", key})->Predict(Small());
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << key;
    EXPECT_EQ(out.status.error_message().find(kKeyA), std::string::npos) << "never echo keys";
  }
  v1::ModelInfo info;
  EXPECT_EQ(Client(s, {})->GetModelInfo(&info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Client(s, {})->Health(), "SERVING") << "probes need no key";
  const EngineStats after = s.server->serving()->engine->stats();
  EXPECT_EQ(after.completed, before.completed);
  EXPECT_EQ(after.steps, before.steps);
  EXPECT_EQ(s.server->service().counters().unauthenticated.load(), 4u);
  EXPECT_EQ(s.server->service().counters().calls.load(), 3u);

  EXPECT_TRUE(Client(s, {"", "", "", kKeyA})->Predict(Small()).status.ok());
  EXPECT_TRUE(Client(s, {"", "", "", kKeyB})->Predict(Small()).status.ok());
  EXPECT_TRUE(Client(s, {"", "", "", kKeyB})->GetModelInfo(&info).ok());

  // A key file others may read is refused; so is a short key.
  ServerOptions bad = TestOptions();
  bad.api_key_file = WriteKeys("keys_open", std::string("x:") + kKeyA + "\n", 0644);
  auto refused = VlmServer::Start(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("chmod 600"), std::string::npos);
  bad.api_key_file = WriteKeys("keys_short", "x:short\n");
  refused = VlmServer::Start(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("16 to 256 printable"), std::string::npos);
}

// Two clients: the one over its limit gets RESOURCE_EXHAUSTED with a retry hint; the other is
// served meanwhile. Sessions are per key: B's latest_frame_wins never cancels A's request.
TEST(SecurityTest, PerClientLimitsAndSessionsPerKey) {
  ServerOptions o = TestOptions();
  o.api_key_file = WriteKeys("keys2", std::string("a:") + kKeyA + "\nb:" + kKeyB + "\n");
  o.max_concurrent_per_client = 1;
  o.test_token_delay = 100ms;
  Running s = StartServer(o);
  auto a = Client(s, {"", "", "", kKeyA}), a2 = Client(s, {"", "", "", kKeyA}),
       b = Client(s, {"", "", "", kKeyB});
  v1::PredictRequest held = Small();
  held.mutable_options()->set_max_new_tokens(10);  // ≈1 s with the token delay
  held.set_session_id("agent");
  PredictOutcome first;
  std::thread t([&] { first = a->Predict(held); });
  for (int i = 0; i < 200 && s.server->service().live_calls() == 0; ++i)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(100ms);
  const PredictOutcome over = a2->Predict(Small());
  EXPECT_EQ(over.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(over.status.error_message().find("--max-concurrent-per-client"), std::string::npos);
  EXPECT_EQ(over.trailers.count("retry-after-ms"), 1u);
  v1::PredictRequest newer = Small();
  newer.set_session_id("agent");
  newer.mutable_options()->set_latest_frame_wins(true);
  const PredictOutcome other = b->Predict(newer);
  EXPECT_TRUE(other.status.ok()) << other.status.error_message();
  t.join();
  EXPECT_TRUE(first.status.ok()) << "B's session is not A's: " << first.status.error_message();
  const PredictOutcome again = a2->Predict(Small());
  EXPECT_TRUE(again.status.ok()) << "the slot is free again: " << again.status.error_message();

  // One call every 20 s (no keys: clients by peer address): the first call is served (a bucket
  // below one call used to refuse every call for ever), the next ones within 20 s are refused
  // with a hint of the wait — whatever the machine's speed, unlike a limit of a few per second.
  ServerOptions r = TestOptions();
  r.max_rps_per_client = 0.05;
  Running rs = StartServer(r);
  auto c = Client(rs, {});
  EXPECT_TRUE(c->Predict(Small()).status.ok());
  for (int i = 0; i < 3; ++i) {
    const PredictOutcome out = c->Predict(Small());
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(out.status.error_message().find("--max-rps-per-client"), std::string::npos);
    ASSERT_EQ(out.trailers.count("retry-after-ms"), 1u);
    const int64_t wait = std::stoll(out.trailers.find("retry-after-ms")->second);
    EXPECT_GT(wait, 10000);  // most of the 20 s
    EXPECT_LE(wait, 20000);
  }
}

// Reloads (what SIGHUP does) while a stream runs: the stream finishes; new calls see the new keys
// and the new certificate; bad files at reload keep the old ones.
TEST(SecurityTest, ReloadWhileAStreamRuns) {
  const Pki& p = Certificates();
  std::filesystem::copy_file(p.Path("server.pem"), p.Path("live.pem"),
                             std::filesystem::copy_options::overwrite_existing);
  ServerOptions o = TestOptions();
  o.api_key_file = WriteKeys("keys3", std::string("a:") + kKeyA + "\n");
  o.tls_cert = p.Path("live.pem");
  o.tls_key = p.Path("server.key");
  o.test_token_delay = 50ms;
  Running s = StartServer(o);
  ClientSecurity a{p.Path("ca.pem"), "", "", kKeyA};
  v1::PredictRequest held = Small();
  held.mutable_options()->set_max_new_tokens(16);
  PredictOutcome running;
  std::thread t([&] { running = Client(s, a)->Predict(held); });
  for (int i = 0; i < 200 && s.server->service().live_calls() == 0; ++i)
    std::this_thread::sleep_for(5ms);

  WriteKeys("keys3", std::string("b:") + kKeyB + "\n");
  ASSERT_TRUE(s.server->Reload().ok());
  EXPECT_EQ(Client(s, a)->Predict(Small()).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ClientSecurity b{p.Path("ca.pem"), "", "", kKeyB};
  EXPECT_TRUE(Client(s, b)->Predict(Small()).status.ok());

  // A bad certificate at reload: refused, the old one stays.
  std::filesystem::copy_file(p.Path("expired.pem"), p.Path("live.pem"),
                             std::filesystem::copy_options::overwrite_existing);
  const Status bad = s.server->Reload();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("has expired"), std::string::npos);
  EXPECT_TRUE(Client(s, b)->Predict(Small()).status.ok());
  // A certificate from another CA: after the reload (gRPC re-reads within a second) new
  // connections need that CA.
  std::filesystem::copy_file(p.Path("server_other.pem"), p.Path("live.pem"),
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(s.server->Reload().ok());
  ClientSecurity other{p.Path("other_ca.pem"), "", "", kKeyB};
  bool switched = false;
  for (int i = 0; i < 50 && !switched; ++i) {
    switched = Client(s, other)->Predict(Small()).status.ok();
    if (!switched) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(switched);
  t.join();
  EXPECT_TRUE(running.status.ok()) << running.status.error_message();
  EXPECT_EQ(running.result.usage().completion_tokens(), 16u);
}

TEST(SecurityTest, HealthPortServesOnlyHealth) {
  ServerOptions o = TestOptions();
  o.api_key_file = WriteKeys("keys4", std::string("a:") + kKeyA + "\n");
  o.health_port = 0;
  Running s = StartServer(o);
  ASSERT_GT(s.server->health_port(), 0);
  VlmClient probe("127.0.0.1:" + std::to_string(s.server->health_port()));
  EXPECT_EQ(probe.Health(), "SERVING");
  EXPECT_EQ(probe.Predict(Small()).status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST(SecurityTest, JsonLogLinesAreOneObjectEach) {
  JsonLogFormatter f;
  for (const std::string& payload :
       {std::string(R"({"event": "predict", "id": "r-1", "code": "OK"})"),
        std::string("plain text with a \n newline, a \x01 control byte and bad \xff UTF-8")}) {
    spdlog::details::log_msg msg("vlmserve", spdlog::level::info, payload);
    spdlog::memory_buf_t buf;
    f.format(msg, buf);
    const std::string line(buf.data(), buf.size());
    ASSERT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_EQ(j["level"], "info");
    EXPECT_TRUE(j.contains("ts"));
    EXPECT_TRUE(j.contains("msg") || j["id"] == "r-1");
  }
}

}  // namespace
}  // namespace vlmserve
