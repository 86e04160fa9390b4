// Server lifecycle (see server.h).
#include "server/server.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/text_safety.h"
#include "model/kv_sizing.h"
#include "server/server_metrics.h"

namespace vlmserve {
namespace {

constexpr char kServiceName[] = "vlmserve.v1.VlmService";

// protobuf's own log lines (e.g. a parse problem) go to our log at debug level: requests are parsed
// by server/request_parse.h, which reports problems itself, and must not flood the log.
void RouteProtobufLogs() {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
        if (level >= google::protobuf::LOGLEVEL_FATAL) {
          spdlog::critical("protobuf {}:{}: {}", file, line, message);
        } else {
          spdlog::debug("protobuf {}:{}: {}", file, line, EscapeForLog(message, 512));
        }
      });
}

// gRPC core's own lines (e.g. a failed TLS handshake) go through our log too, so that every line
// has our format (one JSON object each with --log-format json). A client's failed handshake is
// its problem, not the server's: gRPC's ERROR becomes a warning.
void GrpcLog(gpr_log_func_args* args) {
  const char* file = args->file ? args->file : "";
  if (const char* slash = std::strrchr(file, '/')) file = slash + 1;
  const std::string text = EscapeForLog(args->message ? args->message : "", 1024);
  switch (args->severity) {
    case GPR_LOG_SEVERITY_DEBUG:
      spdlog::debug("grpc {}:{}: {}", file, args->line, text);
      break;
    case GPR_LOG_SEVERITY_INFO:
      spdlog::info("grpc {}:{}: {}", file, args->line, text);
      break;
    default:
      spdlog::warn("grpc {}:{}: {}", file, args->line, text);
      break;
  }
}

void SetHealth(grpc::Server* server, bool serving) {
  if (!server) return;
  if (auto* health = server->GetHealthCheckService()) {
    health->SetServingStatus(serving);  // every service, the overall "" included
    health->SetServingStatus(kServiceName, serving);
  }
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

}  // namespace

const char* ServerVersion() { return "vlmserve 0.1.0"; }

std::string BuiltinModelDir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return (std::filesystem::path(buf).parent_path().parent_path() / "share" / "vlmserve" / "models" /
          "builtin")
      .string();
}

StatusOr<std::unique_ptr<VlmServer>> VlmServer::Start(const ServerOptions& options) {
  std::unique_ptr<VlmServer> s(new VlmServer());
  s->options_ = options;
  s->service_ = std::make_unique<VlmService>(options);
  RouteProtobufLogs();
  gpr_set_log_function(GrpcLog);
  // Security material first: a bad file is one clear error and no listener.
  if (!options.api_key_file.empty()) {
    ASSIGN_OR_RETURN(std::shared_ptr<const ApiKeys> keys, ApiKeys::Load(options.api_key_file));
    spdlog::info("{} API key(s) from {}: Predict{} need 'authorization: Bearer KEY'", keys->size(),
                 options.api_key_file, options.public_model_info ? "" : " and GetModelInfo");
    s->service_->SetApiKeys(std::move(keys));
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert.empty() || !options.tls_key.empty() || !options.tls_client_ca.empty()) {
    ASSIGN_OR_RETURN(
        s->tls_, TlsMaterial::Create({options.tls_cert, options.tls_key, options.tls_client_ca}));
    credentials = s->tls_->credentials();
    spdlog::info("{}", s->tls_->description());
  }
  if (!IsLoopback(options.listen) && !s->tls_ && options.api_key_file.empty() &&
      !options.allow_insecure_remote) {
    spdlog::warn(
        "listening on {} without TLS or API keys: anyone who can reach this address can use the "
        "model and read every request in transit (--tls-cert/--tls-key, --api-key-file; "
        "--allow-insecure-remote silences this)",
        options.listen);
  }
  grpc::EnableDefaultHealthCheckService(true);
  // The probe listener is built before reflection is registered (a process-wide plugin), so it
  // serves grpc.health.v1 and nothing else.
  if (options.health_port >= 0) {
    grpc::ServerBuilder hb;
    const std::string haddr = options.listen + ":" + std::to_string(options.health_port);
    hb.AddListeningPort(haddr, grpc::InsecureServerCredentials(), &s->health_port_);
    s->health_server_ = hb.BuildAndStart();
    if (!s->health_server_ || s->health_port_ == 0) {
      return UnavailableError("cannot listen on " + haddr + " (--health-port)");
    }
    SetHealth(s->health_server_.get(), false);
    spdlog::info("health probes (plaintext, grpc.health.v1 only) on {}:{}", options.listen,
                 s->health_port_);
  }
  const bool reflection =
      options.reflection && (options.api_key_file.empty() || options.public_reflection);
  if (options.reflection && !reflection) {
    spdlog::info("reflection is off: it cannot check API keys (--public-reflection keeps it)");
  }
  if (reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = options.listen + ":" + std::to_string(options.port);
  builder.AddListeningPort(address, credentials, &s->port_);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<uint64_t>(options.max_message_bytes, INT_MAX)));
  // Compressed requests are refused: gRPC inflates a message whole before any size limit applies,
  // so 1 MiB of gzip could become 1 GiB in memory. Clients get UNIMPLEMENTED naming the algorithm
  // (and never try, as these algorithms are not advertised in grpc-accept-encoding).
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, false);
  builder.SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, false);
  // Streams and connections (reliability.md G14): bounded streams per connection, dead peers
  // found by keepalive pings, idle and old connections closed with GOAWAY (clients reconnect).
  auto ms = [](std::chrono::milliseconds d) {
    return static_cast<int>(std::min<int64_t>(d.count(), INT_MAX));
  };
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(options.max_streams_per_connection));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ms(options.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ms(options.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  if (options.max_connection_idle.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, ms(options.max_connection_idle));
  }
  if (options.max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(options.max_connection_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               ms(options.max_connection_age_grace));
  }
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return UnavailableError("cannot listen on " + address +
                            " (address in use, or not a local address?)");
  }
  SetHealth(s->server_.get(), false);
  spdlog::info("listening on {}:{} (health NOT_SERVING until the model is loaded and warmed up)",
               options.listen, s->port_);
  if (options.metrics_port >= 0) {
    VlmServer* raw = s.get();
    auto metrics = MetricsServer::Start(options.listen, options.metrics_port, [raw] {
      std::shared_ptr<ServingModel> serving = raw->serving();
      return RenderMetrics(*raw->service_, serving ? serving->engine.get() : nullptr);
    });
    if (!metrics.ok()) return metrics.status();
    s->metrics_ = std::move(metrics).value();
    spdlog::info("metrics on http://{}:{}/metrics", options.listen, s->metrics_->port());
  }
  if (!options.port_file.empty()) {
    std::ofstream(options.port_file) << s->port_ << "\n";
  }
  return s;
}

VlmServer::~VlmServer() { Shutdown(std::chrono::milliseconds(0)); }

Status VlmServer::LoadModel() {
  const std::string dir = options_.model_dir.empty() ? BuiltinModelDir() : options_.model_dir;
  spdlog::info("loading model from {} for device {}", dir, options_.device);
  if (options_.device == "cuda") {
    spdlog::warn(
        "--device cuda: the CUDA runner has not yet passed its GPU check (issue 25); its answers "
        "are unverified against the reference");
  }
  const auto t0 = std::chrono::steady_clock::now();
  EngineOptions eo = EngineOptionsFor(options_);
  eo.on_fatal = FatalHandler();
  eo.on_load_progress = [t0](uint64_t done, uint64_t total) {
    spdlog::info("loading weights onto the GPU: {} of {} ({:.0f} %) after {:.1f} s",
                 FormatBytes(done), FormatBytes(total), 100.0 * done / std::max<uint64_t>(total, 1),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
  auto engine = ServeEngine::Load(dir, options_.device, std::move(eo));
  if (!engine.ok()) return engine.status();
  spdlog::info(
      "model loaded in {:.0f} ms (runner: {})",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
      (*engine)->info().device);
  const EngineModelInfo& info = (*engine)->info();
  spdlog::info(
      "memory: weights {}, KV cache {} = {} pages of 16 tokens per pool ({}); longest context "
      "{} tokens",
      FormatBytes(info.memory.weights_bytes), FormatBytes(info.memory.kv_cache_bytes),
      info.kv_pages, info.memory.kv_sizing, info.max_context_tokens);
  if (const auto& a = (*engine)->info().adapter) {
    std::string kinds;
    for (const std::string& k : a->targeted) kinds += (kinds.empty() ? "" : ",") + k;
    spdlog::info(
        "LoRA adapter {} merged: {} naming, rank {} (modules {}..{}), alpha {}{}, {} language + "
        "{} vision modules ({}), {} LoRA parameters{}",
        a->path, a->naming, a->rank, a->min_rank, a->max_rank, a->alpha,
        a->rslora ? " (rsLoRA)" : "", a->language_modules, a->vision_modules, kinds,
        a->lora_parameters,
        a->saved_tensors.empty()
            ? std::string()
            : ", " + std::to_string(a->saved_tensors.size()) + " tensors from modules_to_save");
  }
  return Serve(std::move(engine));
}

std::function<void(const Status&)> VlmServer::FatalHandler() {
  // Called on the engine thread after every request has been answered.
  return [this](const Status& failure) {
    spdlog::error("the model runner failed and cannot recover: {}; NOT_SERVING",
                  failure.ToString());
    runner_failed_ = true;
    if (server_) SetHealth(server_.get(), false);
    SetHealth(health_server_.get(), false);
    if (options_.on_fatal) options_.on_fatal(failure);
  };
}

Status VlmServer::Serve(StatusOr<std::unique_ptr<ServeEngine>> engine) {
  if (!engine.ok()) return engine.status();
  auto serving = std::make_shared<ServingModel>();
  serving->engine = std::move(engine).value();
  const EngineModelInfo& m = serving->engine->info();

  // Warm-up: one real request through the whole path before anyone is told we are SERVING.
  ServeRequest warm;
  warm.request_id = "warm-up";
  warm.prompt = "warm-up";
  // An action of the default schema (the default output mode): the grammar's masks for the
  // states it passes are computed now, not on the first client's request.
  warm.max_new_tokens = std::min<int32_t>(64, static_cast<int32_t>(options_.max_new_tokens_cap));
  if (m.has_vision) {
    ImageBytes f;
    f.raw = true;
    f.width = f.height = 32;
    f.bytes.assign(32 * 32 * 3, '\0');
    warm.images.frames.push_back(std::move(f));
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (auto g = serving->engine->GrammarFor(warm);
      !g.ok() || (*g && (*g)->shortest_action_tokens() > warm.max_new_tokens)) {
    warm.output_mode = OutputMode::kText;  // a cap below any action: warm up on text
  }
  auto result = serving->engine->RunNow(warm);
  if (!result.ok()) return result.status().WithPrefix("warm-up inference failed");
  spdlog::info(
      "warm-up inference passed in {:.0f} ms",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());

  v1::ModelInfo& info = serving->info;
  info.set_model_type(m.model_type);
  info.set_architecture(m.architecture);
  info.set_parameters(m.parameters);
  info.set_image_size(static_cast<uint32_t>(m.image_size));
  info.set_mm_tokens_per_image(static_cast<uint32_t>(m.mm_tokens_per_image));
  info.set_vocab_size(static_cast<uint32_t>(m.vocab_size));
  info.set_max_context_tokens(static_cast<uint32_t>(m.max_context_tokens));
  info.set_max_new_tokens(options_.max_new_tokens_cap);
  info.set_max_frames(options_.max_frames);
  info.set_device(m.device);
  info.set_server_version(ServerVersion());
  // The directory's name only: where it is on the server's disk is nobody else's business (the
  // start-up log says where it was loaded from).
  info.set_model_path(m.model_name);
  if (m.adapter) {
    v1::LoraAdapter* a = info.mutable_adapter();
    a->set_name(m.adapter->name);
    a->set_rank(static_cast<uint32_t>(m.adapter->rank));
    a->set_alpha(m.adapter->alpha);
    a->set_rslora(m.adapter->rslora);
    for (const std::string& t : m.adapter->targeted) a->add_target_modules(t);
    a->set_parameters(m.adapter->lora_parameters);
    a->set_base_model(m.adapter->base_model);
  }
  serving->facts = {m.has_vision, m.vocab_size};
  serving->engine->Start();
  {
    std::lock_guard<std::mutex> lock(serving_mu_);
    serving_ = serving;
  }
  service_->SetModel(std::move(serving));
  SetHealth(server_.get(), true);
  SetHealth(health_server_.get(), true);
  spdlog::info("SERVING on port {}", port_);
  return Status::Ok();
}

void VlmServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_.exchange(true)) return;
  const auto t0 = std::chrono::steady_clock::now();
  if (server_) SetHealth(server_.get(), false);
  SetHealth(health_server_.get(), false);
  std::shared_ptr<ServingModel> model = service_ ? service_->TakeModel() : nullptr;
  if (server_) {
    // Running streams get `grace` (new calls are UNAVAILABLE meanwhile); StopNow() ends the wait.
    if (service_->live_calls() > 0 && grace.count() > 0) {
      spdlog::info("draining {} call(s) for up to {} ms", service_->live_calls(), grace.count());
      if (!service_->WaitForNoCalls(t0 + grace)) {
        spdlog::warn("{} call(s) still running: cancelling them", service_->live_calls());
      }
    }
    server_->Shutdown(std::chrono::system_clock::now());  // cancels whatever is left
    server_->Wait();
  }
  if (health_server_) {
    health_server_->Shutdown(std::chrono::system_clock::now());
    health_server_->Wait();
  }
  if (model && model->engine) model->engine->Stop();
  {
    std::lock_guard<std::mutex> lock(serving_mu_);
    serving_.reset();
  }
  if (service_)
    spdlog::info("predict calls: {} ({})", service_->counters().calls.load(),
                 service_->counters().Summary());
  spdlog::info(
      "server stopped in {:.0f} ms",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
}

Status VlmServer::Reload() {
  // Both are checked before either changes, so a reload is all or nothing.
  std::shared_ptr<const ApiKeys> keys;
  if (!options_.api_key_file.empty()) {
    ASSIGN_OR_RETURN(keys, ApiKeys::Load(options_.api_key_file));
  }
  if (tls_)
    RETURN_IF_ERROR(CheckTlsFiles({options_.tls_cert, options_.tls_key, options_.tls_client_ca}));
  if (keys) {
    spdlog::info("{} API key(s) reloaded from {}", keys->size(), options_.api_key_file);
    service_->SetApiKeys(std::move(keys));
  }
  if (tls_) RETURN_IF_ERROR(tls_->Reload());
  return Status::Ok();
}

void VlmServer::StopNow() {
  if (service_) service_->Interrupt();
}

}  // namespace vlmserve
