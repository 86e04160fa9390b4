// ServerOptions: every knob of the server, each a command-line flag (server/main.cc), printed at
// start-up. Limits are per request and produce INVALID_ARGUMENT; max_queue is capacity and
// produces RESOURCE_EXHAUSTED (reliability.md rules 3 and the codes table).
#pragma once

#include <cstdint>
#include <string>

#include "engine/serve_engine.h"

namespace vlmserve {

struct ServerOptions {
  // Where and what.
  std::string model_dir;        // empty: the built-in model next to the executable
  std::string device = "auto";  // auto | cpu | cuda
  std::string listen = "127.0.0.1";
  int port = 50051;       // 0: a free port, logged (and written to port_file)
  std::string port_file;  // write the bound port here (for scripts and tests)
  bool reflection = true;
  uint64_t max_message_bytes = 32u << 20;  // gRPC receive cap: four 1920x1080 raw frames fit

  // Per-request limits.
  uint32_t max_frames = 4;
  uint64_t max_prompt_bytes = 16u << 10;
  uint64_t max_system_prompt_bytes = 16u << 10;
  uint32_t max_new_tokens_cap = 512;
  uint32_t default_max_new_tokens = 64;
  uint64_t max_request_id_bytes = 128;
  int64_t max_context_tokens = 0;  // prompt + max_new_tokens; 0 = the model's maximum
  ImageLimits image;

  // Capacity.
  size_t max_queue = 64;
};

// One line per setting, for the start-up log.
std::string DescribeOptions(const ServerOptions& o);

}  // namespace vlmserve
