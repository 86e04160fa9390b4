// ServerOptions: every knob of the server, each a command-line flag (server/main.cc), printed at
// start-up. Limits are per request and produce INVALID_ARGUMENT; max_queue is capacity and
// produces RESOURCE_EXHAUSTED (reliability.md rules 3 and the codes table).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "engine/serve_engine.h"

namespace vlmserve {

struct ServerOptions {
  // Where and what.
  std::string model_dir;        // empty: the built-in model next to the executable
  std::string adapter_dir;      // a PEFT LoRA adapter merged at load; empty = none
  std::string device = "auto";  // auto | cpu | cuda
  std::string listen = "127.0.0.1";
  int port = 50051;       // 0: a free port, logged (and written to port_file)
  std::string port_file;  // write the bound port here (for scripts and tests)
  bool reflection = true;
  int metrics_port = -1;  // Prometheus /metrics: -1 = off, 0 = a free port (logged)
  uint64_t max_message_bytes = 32u << 20;  // gRPC receive cap: four 1920x1080 raw frames fit

  // Per-request limits.
  uint32_t max_frames = 4;
  uint64_t max_prompt_bytes = 16u << 10;
  uint64_t max_system_prompt_bytes = 16u << 10;
  uint32_t max_new_tokens_cap = 512;
  uint32_t default_max_new_tokens = 64;
  uint64_t max_request_id_bytes = 128;
  uint64_t max_action_schema_bytes = 16u << 10;  // GenerationOptions.action_schema
  int64_t max_context_tokens = 0;                // prompt + max_new_tokens; 0 = the model's maximum
  ImageLimits image;

  // The model's memory and steps.
  int64_t kv_cache_tokens = 0;       // tokens of KV cache (each pool); 0 = the runner's default
  int64_t kv_cache_bytes = 0;        // else bytes of KV cache; 0 = unset
  double gpu_memory_fraction = 0.9;  // else, with --device cuda, this share of the GPU's memory
  int64_t prefill_chunk_tokens = 0;  // prefill in chunks of this many tokens; 0 = whole prompts

  // Continuous batching (engine/scheduler.h).
  int64_t max_running = 64;          // requests in a step at once
  int64_t step_token_budget = 512;   // tokens per step (decode rows count one each)
  int64_t max_images_per_batch = 8;  // images per vision batch
  int preprocess_threads = 2;        // workers that decode frames, preprocess and tokenize
  int cpu_threads = 0;               // threads of the CPU runner's ops (0 = every core)
  bool prefix_cache = true;
  bool jump_forward = true;   // append the action grammar's forced tokens without sampling
  size_t grammar_cache = 64;  // compiled action schemas kept
  uint64_t grammar_mask_bytes = 256u << 20;  // allowed-token masks kept, over all schemas

  // Capacity.
  size_t max_queue = 64;
  uint64_t max_queued_bytes = 256u << 20;  // images + texts of queued requests, together

  // Connections and streams (reliability.md G14): a client that stops reading, a dead peer or a
  // half-sent request must not hold the server's memory for ever.
  std::chrono::milliseconds stream_write_timeout{20000};  // a write the client does not take
  uint32_t max_streams_per_connection = 128;              // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
  std::chrono::milliseconds keepalive_time{60000};        // ping a quiet connection this often
  std::chrono::milliseconds keepalive_timeout{20000};     // and drop it if the ping is not answered
  std::chrono::milliseconds min_client_ping_interval{10000};  // clients may ping this often
  std::chrono::milliseconds max_connection_idle{300000};      // no call for this long: GOAWAY
  std::chrono::milliseconds max_connection_age{1800000};      // then GOAWAY; 0 = never
  std::chrono::milliseconds max_connection_age_grace{60000};  // for calls in flight at GOAWAY

  // Shutdown: running streams get this long after the first SIGTERM/SIGINT; a second one stops
  // at once. Below Docker's default 10 s stop timeout (see docs/operations.md).
  std::chrono::milliseconds drain_timeout{8000};

  // Security (docs/operations.md "Security"). Empty = off.
  std::string tls_cert, tls_key;   // PEM: TLS on the main port
  std::string tls_client_ca;       // PEM: mTLS, client certificates required and verified
  std::string api_key_file;        // "name:key" lines; clients send "authorization: Bearer KEY"
  bool public_model_info = false;  // GetModelInfo without a key when keys are configured
  bool public_reflection = false;  // reflection stays on without keys when keys are configured
  int health_port = -1;            // plaintext grpc.health.v1 only (probes); -1 = off, 0 = free
  uint32_t max_concurrent_per_client = 0;  // Predict calls at once per key (or peer); 0 = no limit
  double max_rps_per_client = 0;           // Predict calls per second per key (or peer); 0 = none
  bool allow_insecure_remote = false;      // no warning for a non-loopback plaintext keyless bind
  std::string log_format = "text";         // text | json (one JSON object per request line)

  // Called once when the model runner's device fails for good (after health went NOT_SERVING and
  // every request ended with UNAVAILABLE): main() exits non-zero so the orchestrator restarts the
  // process (reliability.md G10). Empty: the server stays up, NOT_SERVING (tests).
  std::function<void(const Status&)> on_fatal;

  // Test hook: the engine sleeps this long after each token (0 in production).
  std::chrono::milliseconds test_token_delay{0};
};

// One line per setting, for the start-up log.
std::string DescribeOptions(const ServerOptions& o);

// The engine's share of the settings (limits, queue, test hooks).
EngineOptions EngineOptionsFor(const ServerOptions& o);

}  // namespace vlmserve
