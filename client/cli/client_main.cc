// vlmserve-client: talk to a vlmserve server.
//
//   vlmserve-client predict --server ADDR (--frames F1 [F2 F3 F4] | --grid FILE) --prompt TEXT
//                   [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-k K]
//                   [--top-p P] [--seed S] [--pan-and-scan] [--request-id ID] [--session-id ID]
//                   [--deadline-ms MS] [--latest-frame-wins] [--json]
//       prints the streamed text as it arrives, then the result and timings
//   vlmserve-client health --server ADDR [--service NAME]   exit 0 only when SERVING
//   vlmserve-client info --server ADDR                       the served model and limits
//
// Exit codes: 0 ok, 1 the call failed (its status is printed), 2 bad usage.
#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "client/client.h"
#include "client/cli/security_options.h"

namespace vlmserve {
namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string s;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &s, o);
  return s;
}

int Run(int argc, char** argv) {
  CLI::App app{"vlmserve-client: call a vlmserve server (predict, health, info)."};
  app.fallthrough();  // the security flags (below) may follow the subcommand
  app.require_subcommand(1);
  std::string server = "127.0.0.1:50051";

  auto* predict = app.add_subcommand("predict", "Stream one prediction");
  std::vector<std::string> frames;
  std::string grid, prompt, system, request_id, session_id;
  uint32_t max_new = 0, top_k = 0;
  float temperature = 0, top_p = 1;
  uint64_t seed = 0;
  bool pan_and_scan = false, as_json = false;
  predict->add_option("--server", server, "host:port")->default_val("127.0.0.1:50051");
  auto* fr = predict->add_option("--frames", frames, "1 to 4 frame images (PNG/JPEG), oldest first")
                 ->expected(1, 4);
  auto* gr = predict->add_option("--grid", grid, "One pre-composed grid image");
  fr->excludes(gr);
  predict->add_option("--prompt", prompt, "The instruction")->required();
  predict->add_option("--system", system, "System text");
  auto* o_max = predict->add_option("--max-new-tokens", max_new, "Server default when unset");
  auto* o_temp = predict->add_option("--temperature", temperature, "0 = greedy (the default)");
  auto* o_k = predict->add_option("--top-k", top_k, "0 = off");
  auto* o_p = predict->add_option("--top-p", top_p, "1 = off");
  auto* o_seed = predict->add_option("--seed", seed, "Sampling seed");
  predict->add_flag("--pan-and-scan", pan_and_scan, "Ask for pan & scan crops");
  predict->add_option("--request-id", request_id, "Your id for this request");
  predict->add_option("--session-id", session_id, "Your agent's identity");
  int64_t deadline_ms = 300000;
  bool latest_frame_wins = false;
  predict
      ->add_option("--deadline-ms", deadline_ms,
                   "The call's deadline: the server stops (or never starts) the request after "
                   "this many milliseconds; DEADLINE_EXCEEDED")
      ->default_val(300000)
      ->check(CLI::Range(int64_t{1}, int64_t{86400000}));
  predict->add_flag("--latest-frame-wins", latest_frame_wins,
                    "Cancel this session's older requests still queued or running (needs "
                    "--session-id)");
  std::string output_mode = "action", schema_file;
  std::vector<std::string> allowed_buttons;
  uint32_t logprobs = 0;
  predict->add_option("--output-mode", output_mode,
                      "action: one JSON action of the schema (the server's default); text: free "
                      "text")
      ->default_val("action")
      ->check(CLI::IsMember({"action", "text"}));
  predict
      ->add_option("--allowed-buttons", allowed_buttons,
                   "Only these buttons of the default schema, comma-separated (e.g. up,down,a)")
      ->delimiter(',');
  predict->add_option("--action-schema", schema_file,
                      "A JSON Schema file for the action instead of the default (docs/actions.md)");
  predict->add_option("--logprobs", logprobs,
                      "Each token's logprob and its K most likely alternatives (in --json output)")
      ->check(CLI::Range(0u, 20u));
  predict->add_flag("--json", as_json, "Print the result message as JSON instead of text");

  auto* health = app.add_subcommand("health", "Exit 0 only when the server is SERVING");
  std::string service;
  health->add_option("--server", server, "host:port")->default_val("127.0.0.1:50051");
  health->add_option("--service", service, "A service name; default: the whole server");
  auto* info = app.add_subcommand("info", "Show the served model and limits");
  ClientSecurity security;
  AddSecurityOptions(app, &security);
  info->add_option("--server", server, "host:port")->default_val("127.0.0.1:50051");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  VlmClient client(server, 64u << 20, false, security);
  if (!client.error().empty()) {
    std::fprintf(stderr, "vlmserve-client: %s\n", client.error().c_str());
    return 1;
  }

  if (health->parsed()) {
    grpc::Status st;
    const std::string s = client.Health(service, &st);
    std::printf("%s\n", s.c_str());
    return s == "SERVING" ? 0 : 1;
  }
  if (info->parsed()) {
    v1::ModelInfo mi;
    grpc::Status st = client.GetModelInfo(&mi);
    if (!st.ok()) {
      std::fprintf(stderr, "vlmserve-client: %d %s\n", static_cast<int>(st.error_code()),
                   st.error_message().c_str());
      return 1;
    }
    std::printf("%s\n", ToJson(mi).c_str());
    return 0;
  }

  v1::PredictRequest req;
  if (frames.empty() == grid.empty()) {
    std::fprintf(stderr, "vlmserve-client predict: give --frames F1 [F2 F3 F4] or --grid FILE\n");
    return 2;
  }
  for (const std::string& f : frames) {
    if (!ReadFile(f, req.add_frames()->mutable_encoded())) {
      std::fprintf(stderr, "vlmserve-client: cannot read %s\n", f.c_str());
      return 1;
    }
  }
  if (!grid.empty() && !ReadFile(grid, req.mutable_grid()->mutable_encoded())) {
    std::fprintf(stderr, "vlmserve-client: cannot read %s\n", grid.c_str());
    return 1;
  }
  req.set_prompt(prompt);
  req.set_system_prompt(system);
  req.set_request_id(request_id);
  req.set_session_id(session_id);
  v1::GenerationOptions* o = req.mutable_options();
  if (*o_max) o->set_max_new_tokens(max_new);
  if (*o_temp) o->set_temperature(temperature);
  if (*o_k) o->set_top_k(top_k);
  if (*o_p) o->set_top_p(top_p);
  if (*o_seed) o->set_seed(seed);
  o->set_pan_and_scan(pan_and_scan);
  o->set_latest_frame_wins(latest_frame_wins);
  o->set_output_mode(output_mode == "text" ? v1::OUTPUT_MODE_TEXT : v1::OUTPUT_MODE_ACTION_JSON);
  for (const std::string& b : allowed_buttons) o->add_allowed_buttons(b);
  if (!schema_file.empty() && !ReadFile(schema_file, o->mutable_action_schema())) {
    std::fprintf(stderr, "vlmserve-client: cannot read %s\n", schema_file.c_str());
    return 1;
  }
  o->set_logprobs(logprobs);
  std::vector<v1::TokenDelta> deltas;  // kept for --json --logprobs
  PredictOutcome r = client.Predict(
      req,
      [&](const v1::TokenDelta& d) {
        if (as_json) {
          if (logprobs > 0) deltas.push_back(d);
          return;
        }
        std::fwrite(d.text().data(), 1, d.text().size(), stdout);
        std::fflush(stdout);
      },
      std::chrono::milliseconds(deadline_ms));
  if (!r.status.ok()) {
    if (!as_json) std::printf("\n");
    std::fprintf(stderr, "vlmserve-client: %d %s\n", static_cast<int>(r.status.error_code()),
                 r.status.error_message().c_str());
    return 1;
  }
  if (as_json) {
    for (const v1::TokenDelta& d : deltas) std::printf("%s\n", ToJson(d).c_str());
    std::printf("%s\n", ToJson(r.result).c_str());
  } else {
    const v1::Timings& t = r.result.timings();
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr,
                 "[finish %s; %u prompt tokens, %u images, %u tokens; queue %.1f ms, preprocess "
                 "%.1f ms, vision "
                 "%.1f ms, prefill %.1f ms, decode %.1f ms, first token %.1f ms, total %.1f ms]\n",
                 v1::FinishReason_Name(r.result.finish_reason()).c_str(),
                 r.result.usage().prompt_tokens(), r.result.usage().images(),
                 r.result.usage().completion_tokens(), t.queue_us() / 1e3, t.preprocess_us() / 1e3,
                 t.vision_us() / 1e3, t.prefill_us() / 1e3, t.decode_us() / 1e3,
                 t.first_token_us() / 1e3, t.total_us() / 1e3);
  }
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
