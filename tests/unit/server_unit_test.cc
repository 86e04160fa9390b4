// The server's pieces without a network: the request parser (wire-format check + protobuf), the
// status mapping and the text made safe for clients and logs, the retry hint, and the API's
// compatibility against a committed descriptor golden.
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/text_safety.h"
#include "common/utf8.h"
#include "engine/serve_engine.h"
#include "server/request_parse.h"
#include "server/validate.h"
#include "server/status_map.h"
#include "tests/kernels/test_rng.h"
#include "tests/test_paths.h"
#include "vlmserve/v1/vlmserve.pb.h"

namespace vlmserve {
namespace {

using vlmserve::testing::FixturePath;

// ---- request parsing ------------------------------------------------------------------------

v1::PredictRequest RandomRequest(testing::Rng& rng) {
  v1::PredictRequest r;
  const int frames = static_cast<int>(rng.Next() % 5);
  for (int i = 0; i < frames; ++i) {
    if (rng.Next() % 2) {
      r.add_frames()->set_encoded(std::string(rng.Next() % 300, static_cast<char>(rng.Next())));
    } else {
      v1::RawImage* raw = r.add_frames()->mutable_raw();
      raw->set_width(static_cast<uint32_t>(rng.Next()));
      raw->set_height(static_cast<uint32_t>(rng.Next() % 7));
      raw->set_rgb(std::string(rng.Next() % 50, '\x7f'));
    }
  }
  if (rng.Next() % 3 == 0) r.mutable_grid()->set_encoded("\x89PNG");
  r.set_prompt(std::string(rng.Next() % 200, static_cast<char>(0x80 | (rng.Next() & 0x7f))));
  if (rng.Next() % 2) r.set_system_prompt("sys");
  if (rng.Next() % 2) r.set_request_id("id-" + std::to_string(rng.Next()));
  if (rng.Next() % 2) r.set_session_id("caf\xc3\xa9 \xf0\x9f\x8e\xae");  // valid UTF-8
  v1::GenerationOptions* o = r.mutable_options();
  if (rng.Next() % 2) o->set_max_new_tokens(static_cast<uint32_t>(rng.Next()));
  if (rng.Next() % 2) o->set_temperature(0.7f);
  if (rng.Next() % 2) o->set_top_k(static_cast<uint32_t>(rng.Next() % 100));
  if (rng.Next() % 2) o->set_seed(rng.Next() * rng.Next());
  o->set_output_mode(static_cast<v1::OutputMode>(rng.Next() % 3));
  o->set_pan_and_scan(rng.Next() % 2);
  return r;
}

// Every valid request parses back to itself: the checker refuses nothing protobuf would accept.
TEST(RequestParseTest, ValidRequestsRoundTrip) {
  testing::Rng rng(11);
  for (int i = 0; i < 500; ++i) {
    const v1::PredictRequest r = RandomRequest(rng);
    const std::string bytes = r.SerializeAsString();
    v1::PredictRequest back;
    ASSERT_TRUE(ParseRequestBytes(bytes, &back).ok()) << i;
    EXPECT_EQ(back.SerializeAsString(), bytes);
  }
}

// Unknown fields of every wire type, including (shallow) groups, are accepted as protobuf does.
TEST(RequestParseTest, UnknownFieldsAreAccepted) {
  const std::string unknown = std::string("\xa0\x06\x05", 3)  // field 100, varint
                              + std::string("\xa1\x06", 2) + std::string(8, 'x')  // fixed64
                              + std::string("\xa5\x06", 2) + std::string(4, 'y')  // fixed32
                              + std::string(
                                    "\xa2\x06\x03"
                                    "abc",
                                    6)                                       // bytes
                              + std::string("\xa3\x06\x08\x01\xa4\x06", 6);  // group
  v1::PredictRequest back;
  EXPECT_TRUE(ParseRequestBytes(unknown + "\x1a\x02hi", &back).ok());
  EXPECT_EQ(back.prompt(), "hi");
}

// Every prefix of a valid message either parses (it ended on a field boundary) or is refused with
// INVALID_ARGUMENT — never a crash, never a message that protobuf would parse differently.
TEST(RequestParseTest, EveryTruncationIsCleanlyRefusedOrAPrefixMessage) {
  testing::Rng rng(5);
  const std::string bytes = RandomRequest(rng).SerializeAsString();
  for (size_t n = 0; n < bytes.size(); ++n) {
    v1::PredictRequest ours, theirs;
    const Status s = ParseRequestBytes(bytes.substr(0, n), &ours);
    const bool protobuf_ok = theirs.ParseFromString(bytes.substr(0, n));
    EXPECT_EQ(s.ok(), protobuf_ok) << "cut at " << n << ": " << s.ToString();
    if (!s.ok()) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(s.message().rfind("the request is not a valid vlmserve.v1.PredictRequest: ", 0),
                0u);
    }
  }
}

TEST(RequestParseTest, MalformedMessagesSayWhatAndWhere) {
  struct Case {
    std::string bytes;
    const char* message;
  };
  const Case cases[] = {
      {std::string("\x1a\x05"
                   "ab",
                   4),
       "field 3 (prompt) declares 5 bytes but 2 remain at byte 1"},
      {std::string("\x08", 1), "truncated varint at byte 1"},
      {std::string("\x08") + std::string(10, '\x80') + "\x01",
       "varint longer than 10 bytes at byte 1"},
      {std::string(17, '\x0b'), "messages or groups nested deeper than 16 levels at byte 17"},
      {std::string("\x0b\x0c", 2) + std::string("\x14", 1),
       "end-group tag 2 outside any group at byte 2"},
      {std::string("\x0b\x14", 2), "end of group 2 inside group 1 at byte 1"},
      {std::string("\x0e", 1), "invalid wire type 6 for field 1 (frames) at byte 0"},
      {std::string("\xf8\xff\xff\xff\x1f\x00", 6), "invalid field number 1073741823 at byte 0"},
      {std::string("\x32\x03"
                   "a\xc0\x80",
                   5),
       "field 6 (request_id) is not valid UTF-8 at byte 3"},
      {std::string("\x2a\x03\x08\x80\x80", 5), "truncated varint at byte 3"},
      {std::string("\x2d\x01\x02", 3), "field 5 (options) needs 4 bytes at byte 1"},
  };
  for (const Case& c : cases) {
    v1::PredictRequest out;
    const Status s = ParseRequestBytes(c.bytes, &out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.message;
    EXPECT_NE(s.message().find(c.message), std::string::npos)
        << "\"" << s.message() << "\" lacks \"" << c.message << "\"";
  }
}

// Groups exactly at the depth limit are fine; one more level is refused.
TEST(RequestParseTest, DepthLimitIsExact) {
  WireLimits lim;
  lim.max_depth = 4;
  auto nested = [](int levels) {
    return std::string(levels, '\x0b') + std::string(levels, '\x0c');
  };
  EXPECT_TRUE(CheckWireFormat(nested(4), *v1::PredictRequest::descriptor(), lim).ok());
  EXPECT_FALSE(CheckWireFormat(nested(5), *v1::PredictRequest::descriptor(), lim).ok());
}

// ---- status mapping and text safety ------------------------------------------------------------

TEST(StatusMapTest, CodesAndMessages) {
  EXPECT_EQ(ToGrpcStatus(InvalidArgumentError("x"), "r").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(OutOfRangeError("x"), "r").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A runner's UNIMPLEMENTED is not the client's fault.
  EXPECT_EQ(ToGrpcStatus(UnimplementedError("x"), "r").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(ToGrpcStatus(Status(StatusCode::kFailedPrecondition, "x"), "r").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ToGrpcStatus(ResourceExhaustedError("x"), "r").error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(UnavailableError("x"), "r").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ToGrpcStatus(Status(StatusCode::kDeadlineExceeded, "x"), "r").error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  const grpc::Status internal = ToGrpcStatus(NotFoundError("no sequence 7"), "req-9");
  EXPECT_EQ(internal.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(internal.error_message(), "internal error (request req-9): no sequence 7");
  // Whatever bytes reached a message, it leaves as bounded, valid UTF-8 without controls.
  const grpc::Status dirty =
      ToGrpcStatus(InvalidArgumentError("bad \xff\xfe chunk\n\x01" + std::string(5000, 'z')), "r");
  EXPECT_TRUE(IsValidUtf8(dirty.error_message()));
  EXPECT_LE(dirty.error_message().size(), 1024u);
  EXPECT_EQ(dirty.error_message().find('\n'), std::string::npos);
  EXPECT_EQ(dirty.error_message().rfind("bad \xEF\xBF\xBD\xEF\xBF\xBD chunk\\x0A\\x01zz", 0), 0u);
}

TEST(TextSafetyTest, EscapeForLog) {
  EXPECT_EQ(EscapeForLog("plain-id_1.2:3"), "plain-id_1.2:3");
  EXPECT_EQ(EscapeForLog("a\nb\tc\x7f"), "a\\x0Ab\\x09c\\x7F");
  EXPECT_EQ(EscapeForLog("caf\xc3\xa9"), "caf\\xC3\\xA9");
  EXPECT_EQ(EscapeForLog("back\\slash"), "back\\\\slash");
  EXPECT_EQ(EscapeForLog(std::string(10, 'x'), 4), "xxxx...(10 bytes)");
}

TEST(TextSafetyTest, SanitizeForClientCutsAtCharacterBoundaries) {
  EXPECT_EQ(SanitizeForClient("ok"), "ok");
  EXPECT_EQ(SanitizeForClient("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(SanitizeForClient("\xc3"), "\xEF\xBF\xBD");
  const std::string snowmen = [] {
    std::string s;
    for (int i = 0; i < 100; ++i) s += "\xe2\x98\x83";  // 3 bytes each
    return s;
  }();
  for (size_t max = 4; max < 40; ++max) {
    const std::string out = SanitizeForClient(snowmen, max);
    EXPECT_LE(out.size(), max);
    EXPECT_TRUE(IsValidUtf8(out)) << max;
    EXPECT_EQ(out.substr(out.size() - 3), "...");
  }
  EXPECT_EQ(SanitizeForClient("abcdef", 6), "abcdef");  // exactly at the limit: whole
  EXPECT_EQ(SanitizeForClient("abcdefg", 6), "abc...");
}

// ---- retry hint --------------------------------------------------------------------------------

TEST(RetryAfterTest, FollowsTheQueueAndTheServiceTime) {
  EXPECT_EQ(RetryAfterMs(0, true, 250), 250);
  EXPECT_EQ(RetryAfterMs(63, true, 16), 64 * 16);
  EXPECT_EQ(RetryAfterMs(3, false, 0), 300);         // no history yet: 100 ms per request
  EXPECT_EQ(RetryAfterMs(0, false, 0), 10);          // floor
  EXPECT_EQ(RetryAfterMs(1000, true, 1000), 60000);  // ceiling
  EXPECT_EQ(RetryAfterMs(7, true, 100, /*concurrency=*/4), 200);
}

// ---- the API only changes compatibly
// -------------------------------------------------------------

// The committed golden is vlmserve.proto's FileDescriptorProto (text format). Every message,
// field, enum value and method in it must still exist with the same number, name, type and label;
// anything new must be added to the golden deliberately (VLMSERVE_WRITE_API_GOLDEN=1 rewrites it:
// review that its diff only adds).
const char kGolden[] = "api/vlmserve_v1.descriptor.txt";

google::protobuf::FileDescriptorProto CurrentApi() {
  google::protobuf::FileDescriptorProto p;
  v1::PredictRequest::descriptor()->file()->CopyTo(&p);
  p.clear_source_code_info();
  return p;
}

std::string Describe(const google::protobuf::FieldDescriptorProto& f) {
  return f.name() + " = " + std::to_string(f.number()) + " type " + std::to_string(f.type()) +
         " label " + std::to_string(f.label()) + " " + f.type_name() +
         (f.has_oneof_index() ? " oneof " + std::to_string(f.oneof_index()) : "") +
         (f.proto3_optional() ? " optional" : "");
}

// Lines "Message.field: description" for everything in the descriptor (nested types included).
void Flatten(const google::protobuf::DescriptorProto& m, const std::string& prefix,
             std::set<std::string>* out) {
  const std::string name = prefix + m.name();
  out->insert(name + " (message)");
  for (const auto& f : m.field()) out->insert(name + "." + f.name() + ": " + Describe(f));
  for (const auto& n : m.nested_type()) Flatten(n, name + ".", out);
  for (const auto& e : m.enum_type()) {
    for (const auto& v : e.value())
      out->insert(name + "." + e.name() + "." + v.name() + " = " + std::to_string(v.number()));
  }
}

std::set<std::string> Flatten(const google::protobuf::FileDescriptorProto& p) {
  std::set<std::string> out;
  out.insert("package " + p.package());
  for (const auto& m : p.message_type()) Flatten(m, "", &out);
  for (const auto& e : p.enum_type()) {
    for (const auto& v : e.value())
      out.insert(e.name() + "." + v.name() + " = " + std::to_string(v.number()));
  }
  for (const auto& s : p.service()) {
    for (const auto& m : s.method()) {
      out.insert(s.name() + "/" + m.name() + "(" + m.input_type() + ") -> " +
                 (m.server_streaming() ? "stream " : "") + m.output_type());
    }
  }
  return out;
}

TEST(ApiCompatibilityTest, OnlyAdditionsAgainstTheGolden) {
  const google::protobuf::FileDescriptorProto current = CurrentApi();
  if (const char* w = std::getenv("VLMSERVE_WRITE_API_GOLDEN"); w && std::string(w) == "1") {
    std::string text;
    google::protobuf::TextFormat::PrintToString(current, &text);
    std::ofstream(FixturePath(kGolden)) << text;
    GTEST_SKIP() << "wrote " << FixturePath(kGolden);
  }
  std::ifstream in(FixturePath(kGolden));
  ASSERT_TRUE(in.good()) << "missing " << FixturePath(kGolden);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  google::protobuf::FileDescriptorProto golden;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &golden));
  const std::set<std::string> was = Flatten(golden), now = Flatten(current);
  for (const std::string& line : was) {
    EXPECT_TRUE(now.count(line)) << "removed, renamed, renumbered or retyped: " << line;
  }
  for (const std::string& line : now) {
    EXPECT_TRUE(was.count(line))
        << "new in the API (add it to the golden deliberately, VLMSERVE_WRITE_API_GOLDEN=1): "
        << line;
  }
}

// ghz is not packaged here: keep its configs honest by parsing each one's request data as a
// PredictRequest (protobuf's JSON mapping, as ghz does) and validating it as the server would.
TEST(DeployTest, EveryGhzConfigHoldsAValidPredictRequest) {
  int configs = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::SourceDir() + "/deploy/ghz")) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    const auto cfg = nlohmann::json::parse(in);
    EXPECT_EQ(cfg["call"], "vlmserve.v1.VlmService.Predict") << entry.path();
    v1::PredictRequest req;
    const auto st = google::protobuf::util::JsonStringToMessage(cfg["data"].dump(), &req);
    ASSERT_TRUE(st.ok()) << entry.path() << ": " << st.ToString();
    ServerOptions opt;
    auto native = ValidatePredictRequest(req, opt, ModelFacts{true, 1216}, "ghz");
    EXPECT_TRUE(native.ok()) << entry.path() << ": " << native.status().ToString();
    EXPECT_EQ(native->prompt, "Which button next?");
    ++configs;
  }
  EXPECT_GE(configs, 3);
}

}  // namespace
}  // namespace vlmserve
