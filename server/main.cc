// vlmserve: the gRPC server. With no flags it serves the built-in model (found next to the
// executable, not in the working directory) on 127.0.0.1:50051.
//
// Start-up: parse flags → log every setting → bind (health NOT_SERVING) → load the model → one
// warm-up inference → SERVING. SIGINT/SIGTERM: NOT_SERVING, no new calls, running streams get
// --drain-timeout seconds, then exit 0; a second signal during the drain cancels them at once
// (exit 0 within a second). A model that does not load or warm up exits 1 with the reason; bad
// flags exit 2; a runner whose device fails for good (a sticky CUDA error) turns health
// NOT_SERVING, answers every request with UNAVAILABLE and exits 3 for a restart.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <ctime>
#include <thread>

#include "kernels/cpu/parallel.h"
#include "server/json_log.h"
#include "server/options.h"
#include "server/server.h"

namespace vlmserve {
namespace {

// Exit code when the model runner's device failed for good (reliability.md G10): distinct from
// 1 (could not load or serve) and 2 (bad flags).
constexpr int kExitRunnerFailed = 3;

int Run(int argc, char** argv) {
  ServerOptions o;
  double drain_s = 8, write_timeout_s = 20, keepalive_s = 60, keepalive_timeout_s = 20;
  double min_ping_s = 10, idle_s = 300, age_s = 1800, age_grace_s = 60;
  int test_token_delay_ms = 0;
  CLI::App app{
      "vlmserve: a gRPC inference server for Gemma 3 vision-language models. Clients send "
      "1-4 game frames (composed into a 2x2 grid) or an image, and an instruction, to "
      "vlmserve.v1.VlmService/Predict and receive the answer streamed token by token."};
  app.set_version_flag("--version", ServerVersion());
  app.add_option("--model", o.model_dir,
                 "Model directory (config.json, safetensors weights, tokenizer.json); "
                 "default: the built-in model next to the executable");
  app.add_option("--adapter", o.adapter_dir,
                 "PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors) "
                 "merged into the model's weights at load: W + scale*B*A in fp32. A QLoRA "
                 "adapter is merged into the unquantized base");
  app.add_option("--device", o.device,
                 "auto | cpu | cuda (auto picks the CPU reference runner for now)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--listen", o.listen, "Address to bind; 0.0.0.0 to accept remote clients")
      ->default_str("127.0.0.1");
  app.add_option("--port", o.port, "Port; 0 picks a free one and logs it")
      ->default_val(50051)
      ->check(CLI::Range(0, 65535));
  app.add_option("--port-file", o.port_file, "Write the bound port to this file");
  app.add_option("--metrics-port", o.metrics_port,
                 "Serve Prometheus metrics at http://LISTEN:PORT/metrics (0 = a free port, logged; "
                 "absent = off)")
      ->check(CLI::Range(0, 65535));
  app.add_flag("--reflection,!--no-reflection", o.reflection,
               "gRPC server reflection (default on)");
  app.add_option("--max-message-bytes", o.max_message_bytes, "Largest request accepted")
      ->default_val(32u << 20);
  app.add_option("--max-frames", o.max_frames, "Frames per request")
      ->default_val(4)
      ->check(CLI::Range(1u, 4u));
  app.add_option("--max-prompt-bytes", o.max_prompt_bytes, "Prompt size limit")
      ->default_val(16u << 10);
  app.add_option("--max-system-prompt-bytes", o.max_system_prompt_bytes, "System prompt size limit")
      ->default_val(16u << 10);
  app.add_option("--max-new-tokens-cap", o.max_new_tokens_cap,
                 "Largest max_new_tokens a request may ask")
      ->default_val(512);
  app.add_option("--default-max-new-tokens", o.default_max_new_tokens,
                 "max_new_tokens when a request sets none")
      ->default_val(64);
  app.add_option("--max-context-tokens", o.max_context_tokens,
                 "Prompt + max_new_tokens limit (0 = the model's)")
      ->default_val(0);
  app.add_option("--kv-cache-tokens", o.kv_cache_tokens,
                 "Tokens the KV cache holds (paged, 16 tokens a page; 0 = sized by "
                 "--kv-cache-bytes, else by --gpu-memory-fraction on a GPU, else 16384). The "
                 "context limit is lowered to fit one sequence")
      ->default_val(0)
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 26));
  app.add_option("--kv-cache-bytes", o.kv_cache_bytes,
                 "Bytes of KV cache when --kv-cache-tokens is 0 (fp32 on the CPU, bf16 on the "
                 "GPU; 0 = unset)")
      ->default_val(0)
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 50));
  app.add_option("--gpu-memory-fraction", o.gpu_memory_fraction,
                 "With --device cuda and neither KV flag above: the share of the GPU's memory the "
                 "server may hold; the KV cache gets what the weights, 1 GiB for step buffers and "
                 "anything else on the GPU leave of it")
      ->default_val(0.9)
      ->check(CLI::Range(0.05, 1.0));
  app.add_option("--prefill-chunk-tokens", o.prefill_chunk_tokens,
                 "Prefill prompts in chunks of at most this many tokens (0 = as the step budget "
                 "allows); an image's soft tokens are never split")
      ->default_val(0)
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  app.add_option("--max-running", o.max_running,
                 "Requests batched in one model step at once (continuous batching); more wait "
                 "in the queue")
      ->default_val(64)
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--step-token-budget", o.step_token_budget,
                 "Tokens per model step: every running request's next token, then prompt "
                 "chunks; raised to hold one image and every running request")
      ->default_val(512)
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--max-images-per-batch", o.max_images_per_batch,
                 "Images encoded by the vision tower in one batch")
      ->default_val(8)
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  app.add_option("--preprocess-threads", o.preprocess_threads,
                 "Worker threads that decode frames, preprocess and tokenize requests")
      ->default_val(2)
      ->check(CLI::Range(1, 256));
  app.add_option("--cpu-threads", o.cpu_threads,
                 "Threads for the model's math on the CPU runner (0 = every core, from "
                 "$VLMSERVE_CPU_THREADS if set; 1 = the engine thread alone). Large steps, "
                 "batches of images and prefill chunks are split over them; small ones are not")
      ->default_val(0)
      ->check(CLI::Range(0, 256));
  app.add_flag("--prefix-cache,!--no-prefix-cache", o.prefix_cache,
               "Share the KV pages of common prompt prefixes between requests (default on)");
  app.add_flag("--jump-forward,!--no-jump-forward", o.jump_forward,
               "Action mode: append the text the grammar forces (`{\"button\": \"`, the rest of "
               "a value once its prefix is unique) as tokens without sampling them, in one "
               "multi-token step (default on)");
  app.add_option("--max-action-schema-bytes", o.max_action_schema_bytes,
                 "Size limit of a request's action_schema")
      ->default_val(16u << 10);
  app.add_option("--grammar-cache", o.grammar_cache,
                 "Compiled action schemas kept (least recently used dropped)")
      ->default_val(64)
      ->check(CLI::Range(size_t{1}, size_t{1} << 16));
  app.add_option("--grammar-mask-bytes", o.grammar_mask_bytes,
                 "Memory for the action grammars' allowed-token masks (32 KiB each with Gemma's "
                 "262k vocabulary; least recently used dropped)")
      ->default_val(256u << 20);
  app.add_option("--max-image-side", o.image.max_side, "Pixels per side of one image")
      ->default_val(8192);
  app.add_option("--max-image-pixels", o.image.max_pixels, "Pixels of one image")
      ->default_val(33554432);
  app.add_option("--max-image-bytes", o.image.max_encoded_bytes, "Bytes of one encoded image")
      ->default_val(16u << 20);
  app.add_option("--max-jpeg-scans", o.image.max_jpeg_scans, "Scans of a progressive JPEG")
      ->default_val(64);
  app.add_option("--max-queue", o.max_queue,
                 "Requests waiting beyond the running one; more get "
                 "RESOURCE_EXHAUSTED")
      ->default_val(64);
  app.add_option("--max-queued-bytes", o.max_queued_bytes,
                 "Bytes (images + texts) queued requests may hold together; a request that would "
                 "pass it gets RESOURCE_EXHAUSTED (a request into an empty queue is always taken)")
      ->default_val(256u << 20);
  app.add_option("--drain-timeout", drain_s,
                 "Seconds running streams get after SIGTERM/SIGINT; a second signal stops at "
                 "once. Keep it below the orchestrator's grace period (Docker: 10 s, Kubernetes: "
                 "terminationGracePeriodSeconds, 30 s by default)")
      ->default_val(8)
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--stream-write-timeout", write_timeout_s,
                 "Seconds a response write may wait for a client that does not read; then the "
                 "call is cut and its state freed (0 = never)")
      ->default_val(20)
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--max-streams-per-connection", o.max_streams_per_connection,
                 "Concurrent calls on one HTTP/2 connection (more wait in the client)")
      ->default_val(128)
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--keepalive-time", keepalive_s,
                 "Seconds between the server's pings on a quiet connection")
      ->default_val(60)
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--keepalive-timeout", keepalive_timeout_s,
                 "Seconds to wait for a ping's answer before dropping the connection")
      ->default_val(20)
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--min-client-ping-interval", min_ping_s,
                 "Clients may ping this often (seconds); more often gets the connection closed")
      ->default_val(10)
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--max-connection-idle", idle_s,
                 "Seconds without a call before a connection is closed (0 = never)")
      ->default_val(300)
      ->check(CLI::Range(0.0, 864000.0));
  app.add_option("--max-connection-age", age_s,
                 "Seconds before a connection is asked to reconnect (GOAWAY; spreads clients "
                 "over replicas and bounds what a half-sent request can hold; 0 = never)")
      ->default_val(1800)
      ->check(CLI::Range(0.0, 864000.0));
  app.add_option("--max-connection-age-grace", age_grace_s,
                 "Seconds calls in flight get after that GOAWAY")
      ->default_val(60)
      ->check(CLI::Range(0.0, 86400.0));
  // Security.
  app.add_option("--tls-cert", o.tls_cert,
                 "TLS: the server's certificate chain (PEM); with --tls-key. Reloaded on SIGHUP")
      ->group("Security");
  app.add_option("--tls-key", o.tls_key, "TLS: the server's private key (PEM)")->group("Security");
  app.add_option("--tls-client-ca", o.tls_client_ca,
                 "mTLS: clients must present a certificate signed by one of these CAs (PEM)")
      ->group("Security");
  app.add_option("--api-key-file", o.api_key_file,
                 "API keys, one per line as NAME:KEY (or KEY); clients send 'authorization: "
                 "Bearer KEY'. chmod 600. Reloaded on SIGHUP")
      ->group("Security");
  app.add_flag("--public-model-info", o.public_model_info,
               "GetModelInfo without a key when --api-key-file is given")
      ->group("Security");
  app.add_flag("--public-reflection", o.public_reflection,
               "Keep gRPC reflection on when --api-key-file is given (reflection cannot check "
               "keys, so it is off then by default)")
      ->group("Security");
  app.add_option("--health-port", o.health_port,
                 "A plaintext listener serving only grpc.health.v1 (Kubernetes gRPC probes cannot "
                 "do TLS or keys), bound like --listen; 0 = a free port (logged)")
      ->check(CLI::Range(0, 65535))
      ->group("Security");
  app.add_option("--max-concurrent-per-client", o.max_concurrent_per_client,
                 "Predict calls one client (API key name, else peer address) may run at once "
                 "(0 = no limit); more get RESOURCE_EXHAUSTED with retry-after-ms")
      ->default_val(0)
      ->group("Security");
  app.add_option("--max-rps-per-client", o.max_rps_per_client,
                 "Predict calls one client may start per second (token bucket, burst of the same "
                 "size and at least 1; 0.5 = one call every 2 s; 0 = no limit)")
      ->default_val(0)
      ->check(CLI::Range(0.0, 1e6))
      ->group("Security");
  app.add_flag("--allow-insecure-remote", o.allow_insecure_remote,
               "No warning when listening on a non-loopback address without TLS or API keys")
      ->group("Security");
  app.add_option("--log-format", o.log_format,
                 "text, or json: every log line one JSON object (a request's line with id, "
                 "session, key name, peer, outcome, tokens and phase times)")
      ->default_val("text")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--test-token-delay-ms", test_token_delay_ms,
                 "TEST HOOK: sleep this long after each generated token (never in production)")
      ->default_val(0)
      ->check(CLI::Range(0, 60000))
      ->group("");  // hidden from --help
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (o.default_max_new_tokens < 1 || o.default_max_new_tokens > o.max_new_tokens_cap) {
    std::fprintf(stderr,
                 "vlmserve: --default-max-new-tokens must be between 1 and --max-new-tokens-cap\n");
    return 2;
  }
  auto ms = [](double seconds) {
    return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  };
  o.drain_timeout = ms(drain_s);
  o.stream_write_timeout = ms(write_timeout_s);
  o.keepalive_time = ms(keepalive_s);
  o.keepalive_timeout = ms(keepalive_timeout_s);
  o.min_client_ping_interval = ms(min_ping_s);
  o.max_connection_idle = ms(idle_s);
  o.max_connection_age = ms(age_s);
  o.max_connection_age_grace = ms(age_grace_s);
  o.test_token_delay = std::chrono::milliseconds(test_token_delay_ms);
  if (o.log_format == "json") {
    spdlog::set_formatter(std::make_unique<JsonLogFormatter>());
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  spdlog::info("{} starting: {}", ServerVersion(), DescribeOptions(o));

  // Signals are taken by sigwait in this thread only: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGUSR1);  // raised by the server itself when the runner fails for good
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  SetCpuThreads(o.cpu_threads);  // the CPU ops' pool starts here, with the signals blocked
  spdlog::info("CPU ops: {} thread(s)", CpuThreads());
  // The model runner's device failed (a sticky CUDA error): health is NOT_SERVING and every
  // request has been answered; wake this thread, which exits non-zero for a restart.
  o.on_fatal = [](const Status&) { ::kill(::getpid(), SIGUSR1); };

  auto server = VlmServer::Start(o);
  if (!server.ok()) {
    spdlog::error("{}", server.status().ToString());
    return 1;
  }
  Status loaded = (*server)->LoadModel();
  if (!loaded.ok()) {
    spdlog::error("cannot serve: {}", loaded.ToString());
    (*server)->Shutdown(std::chrono::milliseconds(0));
    return 1;
  }
  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) {
      if (!(*server)->runner_failed()) {
        spdlog::warn("SIGUSR1 ignored (the server raises it itself when its model runner fails)");
        continue;
      }
      spdlog::error("exiting with code {} so that the orchestrator restarts the server",
                    kExitRunnerFailed);
      (*server)->Shutdown(std::chrono::milliseconds(0));
      return kExitRunnerFailed;
    }
    if (sig != SIGHUP) break;
    // SIGHUP: reload API keys and TLS material; bad files are logged and the old ones stay.
    const Status reloaded = (*server)->Reload();
    if (reloaded.ok()) {
      spdlog::info("SIGHUP: API keys and TLS material reloaded");
    } else {
      spdlog::error("SIGHUP: reload failed, keeping the previous material: {}",
                    reloaded.ToString());
    }
  }
  spdlog::info("{} received: draining for up to {} ms (send it again to stop now)",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", o.drain_timeout.count());
  // The drain runs on its own thread so that this one can take a second signal meanwhile.
  std::atomic<bool> drained{false};
  std::thread drain([&] {
    (*server)->Shutdown(o.drain_timeout);
    drained = true;
  });
  while (!drained) {
    const timespec poll{0, 50 * 1000 * 1000};  // 50 ms
    if (const int s = sigtimedwait(&signals, nullptr, &poll); s > 0 && s != SIGHUP) {
      spdlog::warn("second signal: cancelling the running calls now");
      (*server)->StopNow();
      break;
    }
  }
  drain.join();
  return 0;
}

}  // namespace
}  // namespace vlmserve

int main(int argc, char** argv) { return vlmserve::Run(argc, argv); }
