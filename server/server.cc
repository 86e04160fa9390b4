// Server lifecycle (see server.h).
#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>

#include "model/cpu_runner.h"
#include "model/model_dir.h"
#include "model/model_stats.h"

namespace vlmserve {
namespace {

constexpr char kServiceName[] = "vlmserve.v1.VlmService";

void SetHealth(grpc::Server* server, bool serving) {
  if (auto* health = server->GetHealthCheckService()) {
    health->SetServingStatus(serving);  // every service, the overall "" included
    health->SetServingStatus(kServiceName, serving);
  }
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
  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = options.listen + ":" + std::to_string(options.port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &s->port_);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<uint64_t>(options.max_message_bytes, INT_MAX)));
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return UnavailableError("cannot listen on " + address +
                            " (address in use, or not a local address?)");
  }
  SetHealth(s->server_.get(), false);
  spdlog::info("listening on {}:{} (health NOT_SERVING until the model is loaded and warmed up)",
               options.listen, s->port_);
  if (!options.port_file.empty()) {
    std::ofstream(options.port_file) << s->port_ << "\n";
  }
  return s;
}

VlmServer::~VlmServer() { Shutdown(std::chrono::milliseconds(0)); }

Status VlmServer::LoadModel() {
  const std::string dir = options_.model_dir.empty() ? BuiltinModelDir() : options_.model_dir;
  std::string device = options_.device;
  if (device == "cuda") {
    return UnimplementedError(
        "--device cuda: the CUDA runner is not part of this build yet; use --device cpu");
  }
  if (device == "auto") device = "cpu";  // the CPU reference runner is the only runner so far
  if (device != "cpu")
    return InvalidArgumentError("--device must be auto, cpu or cuda, got " + device);
  spdlog::info("loading model from {} for {}", dir, device);
  const auto t0 = std::chrono::steady_clock::now();
  auto model = ModelDir::Load(dir);
  if (!model.ok()) return model.status();
  auto owned = std::make_unique<ModelDir>(std::move(model).value());
  ASSIGN_OR_RETURN(auto runner, CpuModelRunner::Create(*owned->checkpoint, owned->config));
  spdlog::info(
      "model loaded in {:.0f} ms",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return Serve(std::move(owned), std::move(runner), device);
}

Status VlmServer::Serve(std::unique_ptr<ModelDir> model, std::unique_ptr<ModelRunner> runner,
                        const std::string& device) {
  auto serving = std::make_shared<ServingModel>();
  const Gemma3Config& c = model->config;
  EngineOptions eo;
  eo.image_limits = options_.image;
  eo.prompt_limits.max_text_bytes = options_.max_prompt_bytes + options_.max_system_prompt_bytes;
  eo.max_queue = options_.max_queue;
  eo.max_context_tokens = options_.max_context_tokens;
  ASSIGN_OR_RETURN(serving->engine, ServeEngine::Create(*model, std::move(runner), eo));

  // Warm-up: one real request through the whole path before anyone is told we are SERVING.
  ServeRequest warm;
  warm.request_id = "warm-up";
  warm.prompt = "warm-up";
  warm.max_new_tokens = 2;
  if (c.has_vision) {
    FrameInput f;
    f.raw = true;
    f.width = f.height = 32;
    f.bytes.assign(32 * 32 * 3, '\0');
    warm.frames.push_back(std::move(f));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto result = serving->engine->RunNow(warm);
  if (!result.ok()) return result.status().WithPrefix("warm-up inference failed");
  spdlog::info(
      "warm-up inference passed in {:.0f} ms",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());

  v1::ModelInfo& info = serving->info;
  info.set_model_type(c.model_type);
  info.set_architecture(c.architecture);
  if (auto p = CountParameters(c); p.ok()) info.set_parameters(p->total);
  info.set_image_size(c.has_vision ? static_cast<uint32_t>(c.vision.image_size) : 0);
  info.set_mm_tokens_per_image(c.has_vision ? static_cast<uint32_t>(c.mm_tokens_per_image) : 0);
  info.set_vocab_size(static_cast<uint32_t>(c.text.vocab_size));
  info.set_max_context_tokens(static_cast<uint32_t>(serving->engine->max_context_tokens()));
  info.set_max_new_tokens(options_.max_new_tokens_cap);
  info.set_max_frames(options_.max_frames);
  info.set_device(device);
  info.set_server_version(ServerVersion());
  info.set_model_path(model->path);
  serving->facts = {c.has_vision, c.text.vocab_size};
  serving->model = std::move(model);
  serving->engine->Start();
  service_->SetModel(std::move(serving));
  SetHealth(server_.get(), true);
  spdlog::info("SERVING on port {}", port_);
  return Status::Ok();
}

void VlmServer::Shutdown(std::chrono::milliseconds grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_) SetHealth(server_.get(), false);
  std::shared_ptr<ServingModel> model = service_ ? service_->TakeModel() : nullptr;
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + grace);  // running streams get `grace`
    server_->Wait();
  }
  if (model && model->engine) model->engine->Stop();
  spdlog::info("server stopped");
}

}  // namespace vlmserve
