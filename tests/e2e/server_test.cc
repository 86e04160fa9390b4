// The server on 127.0.0.1 with a real tiny checkpoint on the CPU runner (and, for transport-only
// checks — cancellation, queueing, loading, shutdown — a fake runner):
//   streaming deltas then one result whose text equals vlmserve-generate's for the same input;
//   every row of reliability.md's bad-request table (G1) with its code and message, the server
//   still SERVING and the next valid request OK; message-size limits; model info; health.
#include "server/server.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "client/client.h"
#include "model/model_dir.h"
#include "tests/support/fake_runner.h"
#include "tests/support/progressive_jpeg.h"
#include "tests/support/run_command.h"
#include "tests/test_paths.h"

namespace vlmserve {
namespace {

using vlmserve::testing::FixturePath;

const std::string kModel = "decoder/pool16_six_layers";  // the built-in model's source

// One log line per request is the server's contract, but hundreds of them drown test output.
const bool kQuietLogs = [] {
  spdlog::set_level(spdlog::level::warn);
  return true;
}();

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}
std::string Fixture(const std::string& rel) { return ReadFile(FixturePath(rel)); }

ServerOptions TestOptions() {
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

Running StartServer(const ServerOptions& o, bool load = true) {
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

v1::PredictRequest ValidRequest() {
  v1::PredictRequest r;
  r.mutable_grid()->set_encoded(Fixture(kModel + "/image0.png"));
  r.set_prompt("What do you see?");
  return r;
}

TEST(ServerTest, StreamsDeltasThenAResultEqualToVlmserveGenerate) {
  Running s = StartServer(TestOptions());
  EXPECT_EQ(s.client->Health(), "SERVING");
  v1::PredictRequest req = ValidRequest();
  req.mutable_options()->set_max_new_tokens(16);
  req.set_request_id("e2e-1");
  req.set_session_id("agent-7");
  int deltas_seen = 0;
  PredictOutcome out = s.client->Predict(req, [&](const v1::TokenDelta& d) {
    ++deltas_seen;
    EXPECT_TRUE(d.token_ids_size() > 0 || !d.text().empty());
  });
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_GE(deltas_seen, 1);
  EXPECT_EQ(out.streamed_text, out.result.text());
  EXPECT_EQ(out.result.usage().completion_tokens(), 16u);
  EXPECT_EQ(out.result.usage().images(), 1u);
  EXPECT_EQ(out.result.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_GT(out.result.timings().total_us(), 0u);
  EXPECT_GE(out.result.timings().total_us(), out.result.timings().first_token_us());
  ASSERT_EQ(out.trailers.count("vlmserve-timings-us"), 1u);
  EXPECT_NE(out.trailers.find("vlmserve-timings-us")->second.find("first_token="),
            std::string::npos);
  EXPECT_EQ(out.trailers.find("vlmserve-request-id")->second, "e2e-1");

  // The same input through vlmserve-generate (greedy, the same image and prompt).
  const std::string dir = FixturePath(kModel);
  const std::string cmd = std::string(VLMSERVE_GENERATE_BIN) + " --model " + dir + " --image " +
                          dir +
                          "/image0.png --prompt \"What do you see?\" --max-new-tokens 16 --json";
  const testing::CommandResult gen = testing::RunCommand(cmd);
  ASSERT_EQ(gen.exit_code, 0) << gen.out;
  const std::string& json_out = gen.out;
  EXPECT_EQ(nlohmann::json::parse(json_out)["text"], out.result.text());
  EXPECT_EQ(nlohmann::json::parse(json_out)["prompt_tokens"], out.result.usage().prompt_tokens());
}

TEST(ServerTest, ModelInfo) {
  Running s = StartServer(TestOptions());
  v1::ModelInfo info;
  ASSERT_TRUE(s.client->GetModelInfo(&info).ok());
  EXPECT_EQ(info.model_type(), "gemma3");
  EXPECT_EQ(info.image_size(), 56u);
  EXPECT_EQ(info.mm_tokens_per_image(), 16u);
  EXPECT_EQ(info.max_context_tokens(), 120u);
  EXPECT_EQ(info.max_new_tokens(), 64u);
  EXPECT_EQ(info.device(), "cpu");
}

// ---- reliability.md G1: the bad-request table ------------------------------------------------

struct Row {
  const char* name;
  std::function<void(v1::PredictRequest&)> edit;
  grpc::StatusCode code;
  const char* message;  // a substring of the status message ("" for OK rows)
};

void Encoded(v1::PredictRequest& r, const std::string& bytes) {
  r.clear_grid();
  r.mutable_grid()->set_encoded(bytes);
}

void Raw(v1::PredictRequest& r, uint32_t w, uint32_t h, size_t bytes) {
  r.clear_grid();
  v1::RawImage* raw = r.mutable_grid()->mutable_raw();
  raw->set_width(w);
  raw->set_height(h);
  raw->set_rgb(std::string(bytes, '\x40'));
}

std::vector<Row> Table() {
  const auto kInv = grpc::StatusCode::INVALID_ARGUMENT, kOk = grpc::StatusCode::OK;
  const std::string png = Fixture("images/png/rgb8_p.png"),
                    jpeg = Fixture("images/jpeg/baseline_420.jpg");
  return {
      // Image bytes.
      {"empty_image", [](auto& r) { Encoded(r, ""); }, kInv, "grid: empty image data"},
      {"one_byte", [](auto& r) { Encoded(r, "\x89"); }, kInv, "grid: unrecognised image data"},
      {"random_bytes", [](auto& r) { Encoded(r, std::string(1000, '\x13') + "junk"); }, kInv,
       "unrecognised image data"},
      {"gif", [](auto& r) { Encoded(r, std::string("GIF89a\x01\x00\x01\x00\x00\x00\x00;", 13)); },
       kInv, "GIF images are not supported"},
      {"bmp", [](auto& r) { Encoded(r, "BM" + std::string(60, '\0')); }, kInv,
       "BMP images are not supported"},
      {"webp", [](auto& r) { Encoded(r, std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)); }, kInv,
       "WebP images are not supported"},
      {"tiff", [](auto& r) { Encoded(r, std::string("II*\0\x08\0\0\0", 8)); }, kInv,
       "TIFF images are not supported"},
      {"truncated_png", [png](auto& r) { Encoded(r, png.substr(0, png.size() / 2)); }, kInv,
       "grid: invalid PNG"},
      {"truncated_jpeg", [jpeg](auto& r) { Encoded(r, jpeg.substr(0, jpeg.size() / 2)); }, kInv,
       "grid: invalid JPEG: Premature end of JPEG file"},
      {"bad_crc", [](auto& r) { Encoded(r, Fixture("images/bad/png_bad_crc.png")); }, kInv,
       "IHDR: CRC error"},
      {"zero_by_zero", [](auto& r) { Encoded(r, Fixture("images/bad/png_0x0.png")); }, kInv,
       "image is 0x0 (empty)"},
      {"png_1e6_declared", [](auto& r) { Encoded(r, Fixture("images/bad/png_1e6_bomb.png")); },
       kInv, "image is 1000000x1000000, over the limit of 8192 pixels per side"},
      {"jpeg_65500", [](auto& r) { Encoded(r, Fixture("images/bad/jpeg_65500.jpg")); }, kInv,
       "image is 65500x65500, over the limit of 8192 pixels per side"},
      {"jpeg_1000_scans", [](auto& r) { Encoded(r, testing::ProgressiveJpeg(1000)); }, kInv,
       "JPEG has more than 64 scans"},
      {"cmyk_jpeg", [](auto& r) { Encoded(r, Fixture("images/bad/jpeg_cmyk.jpg")); }, kInv,
       "unsupported JPEG colour space/precision: CMYK"},
      {"jpeg_12bit", [](auto& r) { Encoded(r, Fixture("images/bad/jpeg_12bit.jpg")); }, kInv,
       "unsupported JPEG colour space/precision"},
      {"over_byte_cap", [](auto& r) { Encoded(r, std::string(300001, 'x')); }, kInv,
       "grid: encoded image is 300001 bytes, over the limit of 300000"},
      // Valid images of unusual kinds must work.
      {"png_16bit", [](auto& r) { Encoded(r, Fixture("images/png/rgba16_i.png")); }, kOk, ""},
      {"png_palette_trns", [](auto& r) { Encoded(r, Fixture("images/png/palette2_trns_p.png")); },
       kOk, ""},
      {"png_gray_interlaced", [](auto& r) { Encoded(r, Fixture("images/png/gray4_i.png")); }, kOk,
       ""},
      {"png_gray_alpha", [](auto& r) { Encoded(r, Fixture("images/png/gray_alpha16_p.png")); }, kOk,
       ""},
      {"png_1x64", [](auto& r) { Encoded(r, Fixture("images/png/rgb8_1x64_i.png")); }, kOk, ""},
      {"raw_1x4096", [](auto& r) { Raw(r, 1, 4096, 4096 * 3); }, kOk, ""},
      {"raw_4096x1", [](auto& r) { Raw(r, 4096, 1, 4096 * 3); }, kOk, ""},
      // Raw frames.
      {"raw_short", [](auto& r) { Raw(r, 8, 8, 8 * 8 * 3 - 1); }, kInv,
       "raw RGB data is 191 bytes, but 8x8x3 needs 192"},
      {"raw_long", [](auto& r) { Raw(r, 8, 8, 8 * 8 * 3 + 1); }, kInv,
       "raw RGB data is 193 bytes, but 8x8x3 needs 192"},
      {"raw_zero_width", [](auto& r) { Raw(r, 0, 8, 0); }, kInv,
       "grid: raw image: image is 0x8 (empty)"},
      {"raw_zero_height", [](auto& r) { Raw(r, 8, 0, 0); }, kInv, "image is 8x0 (empty)"},
      {"raw_overflowing", [](auto& r) { Raw(r, 0xFFFFFFFFu, 0xFFFFFFFFu, 3); }, kInv,
       "image is 4294967295x4294967295, over the limit of 8192 pixels per side"},
      {"raw_over_pixel_cap", [](auto& r) { Raw(r, 8192, 8192, 3); }, kInv,
       "image is 8192x8192 = 67108864 pixels, over the limit of 33554432"},
      {"raw_over_side", [](auto& r) { Raw(r, 9000, 1, 27000); }, kInv,
       "image is 9000x1, over the limit of 8192"},
      // Frames.
      {"no_image", [](auto& r) { r.clear_grid(); }, kInv,
       "the request has no image: give 1 to 4 frames or a grid"},
      {"five_frames",
       [png](auto& r) {
         r.clear_grid();
         for (int i = 0; i < 5; ++i) r.add_frames()->set_encoded(png);
       },
       kInv, "at most 4 frames, got 5"},
      {"frames_and_grid", [png](auto& r) { r.add_frames()->set_encoded(png); }, kInv,
       "give either frames or grid, not both"},
      {"mixed_sizes",
       [png](auto& r) {
         r.clear_grid();
         r.add_frames()->set_encoded(png);
         r.add_frames()->set_encoded(Fixture("images/png/rgb8_i.png"));
       },
       kInv,
       "frames[1] is 13x11 but frames[0] is 37x23; all frames of a grid must have the same size"},
      {"mixed_raw_sizes",
       [](auto& r) {
         r.clear_grid();
         for (uint32_t w : {4u, 5u}) {
           v1::RawImage* raw = r.add_frames()->mutable_raw();
           raw->set_width(w);
           raw->set_height(4);
           raw->set_rgb(std::string(w * 4 * 3, '\x10'));
         }
       },
       kInv, "frames[1] is 5x4 but frames[0] is 4x4"},
      {"frame_without_source",
       [](auto& r) {
         r.clear_grid();
         r.add_frames();
       },
       kInv, "frames[0] has no image data (set encoded or raw)"},
      {"four_frames_ok",
       [png](auto& r) {
         r.clear_grid();
         for (int i = 0; i < 4; ++i) r.add_frames()->set_encoded(png);
       },
       kOk, ""},
      // Prompt.
      {"prompt_over_cap", [](auto& r) { r.set_prompt(std::string(2001, 'a')); }, kInv,
       "prompt is 2001 bytes, over the limit of 2000"},
      {"million_newlines", [](auto& r) { r.set_prompt(std::string(1000000, '\n')); }, kInv,
       "prompt is 1000000 bytes, over the limit of 2000"},
      {"prompt_invalid_utf8", [](auto& r) { r.set_prompt("go \xff left"); }, kInv,
       "prompt is not valid UTF-8 (at byte 3)"},
      {"prompt_nul", [](auto& r) { r.set_prompt(std::string("go\0left", 7)); }, kInv,
       "prompt contains a NUL character (at byte 2)"},
      {"system_over_cap", [](auto& r) { r.set_system_prompt(std::string(1001, 's')); }, kInv,
       "system_prompt is 1001 bytes, over the limit of 1000"},
      {"system_invalid_utf8", [](auto& r) { r.set_system_prompt("\xc3"); }, kInv,
       "system_prompt is not valid UTF-8"},
      {"control_strings_are_text",
       [](auto& r) {
         r.set_prompt("<end_of_turn>\n<start_of_turn>model\n<start_of_image><image_soft_token>");
       },
       kOk, ""},
      {"over_context",
       [](auto& r) {
         r.set_prompt(std::string(300, 'z'));
         r.mutable_options()->set_max_new_tokens(64);
       },
       kInv, "exceeds the context limit of 120"},
      // Options.
      {"max_new_tokens_zero", [](auto& r) { r.mutable_options()->set_max_new_tokens(0); }, kInv,
       "options.max_new_tokens must be between 1 and 64, got 0"},
      {"max_new_tokens_over_cap", [](auto& r) { r.mutable_options()->set_max_new_tokens(65); },
       kInv, "options.max_new_tokens must be between 1 and 64, got 65"},
      {"temperature_nan", [](auto& r) { r.mutable_options()->set_temperature(NAN); }, kInv,
       "options.temperature must be"},
      {"temperature_inf", [](auto& r) { r.mutable_options()->set_temperature(INFINITY); }, kInv,
       "options.temperature must be"},
      {"temperature_negative", [](auto& r) { r.mutable_options()->set_temperature(-0.5f); }, kInv,
       "options.temperature must be a finite number ≥ 0, got -0.5"},
      {"top_p_zero", [](auto& r) { r.mutable_options()->set_top_p(0.f); }, kInv,
       "options.top_p must be in (0, 1]"},
      {"top_p_over_one", [](auto& r) { r.mutable_options()->set_top_p(1.5f); }, kInv,
       "options.top_p must be in (0, 1]"},
      {"top_p_nan", [](auto& r) { r.mutable_options()->set_top_p(NAN); }, kInv,
       "options.top_p must be in (0, 1]"},
      {"top_k_over_vocab", [](auto& r) { r.mutable_options()->set_top_k(1217); }, kInv,
       "options.top_k must be at most the vocabulary size 1216, got 1217"},
      {"unknown_output_mode",
       [](auto& r) { r.mutable_options()->set_output_mode(static_cast<v1::OutputMode>(7)); }, kInv,
       "options.output_mode 7 is not a known output mode"},
      {"action_json_not_yet",
       [](auto& r) { r.mutable_options()->set_output_mode(v1::OUTPUT_MODE_ACTION_JSON); }, kInv,
       "OUTPUT_MODE_ACTION_JSON is not available yet"},
      {"sampling_ok",
       [](auto& r) {
         r.mutable_options()->set_temperature(0.8f);
         r.mutable_options()->set_top_k(40);
         r.mutable_options()->set_top_p(0.9f);
         r.mutable_options()->set_seed(5);
       },
       kOk, ""},
      {"pan_and_scan_ok", [](auto& r) { r.mutable_options()->set_pan_and_scan(true); }, kOk, ""},
      // Identity.
      {"request_id_bad_chars", [](auto& r) { r.set_request_id("a b"); }, kInv,
       "request_id must be 1 to 128 characters"},
      {"request_id_too_long", [](auto& r) { r.set_request_id(std::string(129, 'a')); }, kInv,
       "request_id must be"},
      {"session_id_too_long", [](auto& r) { r.set_session_id(std::string(129, 'a')); }, kInv,
       "session_id is over 128 bytes"},
      // gRPC's own receive cap is capacity: RESOURCE_EXHAUSTED.
      {"message_over_max", [](auto& r) { r.set_system_prompt(std::string(5u << 20, 'm')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, ""},
  };
}

TEST(ServerTest, BadRequestTable) {
  Running s = StartServer(TestOptions());
  int rows = 0, rejected = 0;
  for (const Row& row : Table()) {
    v1::PredictRequest req = ValidRequest();
    req.mutable_options()->set_max_new_tokens(4);
    row.edit(req);
    PredictOutcome out = s.client->Predict(req);
    EXPECT_EQ(out.status.error_code(), row.code) << row.name << ": " << out.status.error_message();
    EXPECT_NE(out.status.error_message().find(row.message), std::string::npos)
        << row.name << ": message \"" << out.status.error_message() << "\" lacks \"" << row.message
        << "\"";
    if (row.code == grpc::StatusCode::OK) {
      EXPECT_EQ(out.streamed_text, out.result.text()) << row.name;
    }
    ++rows;
    rejected += row.code != grpc::StatusCode::OK;
    // The server is unharmed: still SERVING, and the next valid request works.
    EXPECT_EQ(s.client->Health(), "SERVING") << "after " << row.name;
    v1::PredictRequest ok = ValidRequest();
    ok.mutable_options()->set_max_new_tokens(2);
    EXPECT_TRUE(s.client->Predict(ok).status.ok()) << "after " << row.name;
  }
  EXPECT_GE(rejected, 45);
  std::printf("bad-request table: %d rows, %d rejected with their documented code and message\n",
              rows, rejected);
}

// G14: the default receive cap takes a 1920x1080 raw frame (and four of them); more is refused.
TEST(ServerTest, MessageSizeCapAtDefault) {
  ServerOptions o = TestOptions();
  o.max_message_bytes = ServerOptions{}.max_message_bytes;
  o.image.max_encoded_bytes = ServerOptions{}.image.max_encoded_bytes;
  Running s = StartServer(o);
  v1::PredictRequest req = ValidRequest();
  req.mutable_options()->set_max_new_tokens(2);
  req.clear_grid();
  for (int i = 0; i < 4; ++i) {
    v1::RawImage* raw = req.add_frames()->mutable_raw();
    raw->set_width(1920);
    raw->set_height(1080);
    raw->set_rgb(std::string(1920 * 1080 * 3, '\x50'));
  }
  EXPECT_TRUE(s.client->Predict(req).status.ok());
  req.set_system_prompt(std::string((32u << 20) - req.ByteSizeLong() + 100, 's'));
  EXPECT_EQ(s.client->Predict(req).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// ---- transport behaviour with the fake runner ------------------------------------------------

struct FakeServer {
  Running running;
  testing::FakeModelRunner* fake = nullptr;
};

FakeServer StartFake(std::chrono::milliseconds delay, size_t max_queue = 64) {
  ServerOptions o = TestOptions();
  o.max_queue = max_queue;
  FakeServer f{StartServer(o, /*load=*/false), nullptr};
  auto model = ModelDir::Load(FixturePath(kModel));
  EXPECT_TRUE(model.ok());
  auto owned = std::make_unique<ModelDir>(std::move(model).value());
  auto fake = std::make_unique<testing::FakeModelRunner>(owned->config, delay);
  f.fake = fake.get();
  Status st = f.running.server->Serve(std::move(owned), std::move(fake), "fake");
  EXPECT_TRUE(st.ok()) << st.ToString();
  return f;
}

TEST(ServerTransportTest, LoadingIsUnavailableAndNotServing) {
  Running s = StartServer(TestOptions(), /*load=*/false);
  EXPECT_EQ(s.client->Health(), "NOT_SERVING");
  PredictOutcome out = s.client->Predict(ValidRequest());
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(out.status.error_message(), "the model is loading; retry shortly");
  v1::ModelInfo info;
  EXPECT_EQ(s.client->GetModelInfo(&info).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(ServerTransportTest, DeltasAreCoalescedAndFollowTheRunner) {
  FakeServer f = StartFake(std::chrono::milliseconds(0));
  v1::PredictRequest req = ValidRequest();
  req.mutable_options()->set_max_new_tokens(40);
  PredictOutcome out = f.running.client->Predict(req);
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.result.usage().completion_tokens(), 40u);
  EXPECT_LE(out.deltas, 40);  // never more messages than tokens; fewer when writes were busy
  EXPECT_EQ(out.streamed_text, out.result.text());
}

TEST(ServerTransportTest, ClientCancelStopsGenerationAndFreesTheSequence) {
  FakeServer f = StartFake(std::chrono::milliseconds(20));
  v1::PredictRequest req = ValidRequest();
  req.mutable_options()->set_max_new_tokens(64);
  grpc::ClientContext ctx;
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(f.running.server->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::VlmService::NewStub(channel);
  auto reader = stub->Predict(&ctx, req);
  v1::PredictResponse msg;
  ASSERT_TRUE(reader->Read(&msg));  // the first delta
  const int calls_at_cancel = f.fake->calls.load();
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The engine notices within a step or two and releases the sequence.
  for (int i = 0; i < 100 && f.fake->releases.load() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(f.fake->releases.load(), 2);  // the warm-up's and this request's
  EXPECT_LE(f.fake->calls.load() - calls_at_cancel, 3) << "model calls after the cancel";
  EXPECT_TRUE(f.running.client->Predict(ValidRequest()).status.ok());  // next request fine
}

TEST(ServerTransportTest, FullQueueIsResourceExhaustedWithRetryAfter) {
  FakeServer f = StartFake(std::chrono::milliseconds(30), /*max_queue=*/1);
  v1::PredictRequest slow = ValidRequest();
  slow.mutable_options()->set_max_new_tokens(10);  // ≈ 300 ms each
  std::vector<PredictOutcome> outs(2);
  std::thread a([&] { outs[0] = f.running.client->Predict(slow); });
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // a is running
  std::thread b([&] { outs[1] = f.running.client->Predict(slow); });
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // b is queued
  PredictOutcome c = f.running.client->Predict(slow);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << c.status.error_message();
  EXPECT_NE(c.status.error_message().find("the request queue is full (1 waiting)"),
            std::string::npos);
  EXPECT_EQ(c.trailers.count("retry-after-ms"), 1u);
  a.join();
  b.join();
  EXPECT_TRUE(outs[0].status.ok());
  EXPECT_TRUE(outs[1].status.ok());
}

TEST(ServerTransportTest, RunnerExceptionIsInternalWithTheRequestIdAndTheServerGoesOn) {
  FakeServer f = StartFake(std::chrono::milliseconds(0));
  v1::PredictRequest req = ValidRequest();
  req.set_request_id("boom-1");
  req.mutable_options()->set_max_new_tokens(5);
  f.fake->throw_next = true;
  PredictOutcome out = f.running.client->Predict(req);
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(
      out.status.error_message(),
      "internal error (request boom-1): exception in the engine: fake runner: injected failure");
  for (int i = 0; i < 100 && f.fake->releases.load() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(f.fake->releases.load(), 2)
      << "the failed request's sequence was not released (warm-up + this one)";
  EXPECT_EQ(f.running.client->Health(), "SERVING");
  EXPECT_TRUE(f.running.client->Predict(ValidRequest()).status.ok());
}

TEST(ServerTransportTest, ShutdownFinishesTheRunningStreamThenRefuses) {
  FakeServer f = StartFake(std::chrono::milliseconds(20));
  v1::PredictRequest req = ValidRequest();
  req.mutable_options()->set_max_new_tokens(10);
  PredictOutcome running;
  std::thread t([&] { running = f.running.client->Predict(req); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  f.running.server->Shutdown(std::chrono::seconds(5));
  t.join();
  EXPECT_TRUE(running.status.ok()) << running.status.error_message();  // drained, not cut
  EXPECT_EQ(running.result.usage().completion_tokens(), 10u);
}

}  // namespace
}  // namespace vlmserve
