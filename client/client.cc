// The C++ client (see client.h). The health check uses a generic call, so the client needs no
// generated health stubs: grpc.health.v1.HealthCheckRequest is a single string field (1: service)
// and HealthCheckResponse a single enum field (1: status), encoded by hand below.
#include "client/client.h"

#include <grpcpp/generic/generic_stub.h>

#include <climits>
#include <fstream>
#include <sstream>
#include <condition_variable>
#include <mutex>

namespace vlmserve {

namespace {

bool ReadAll(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

}  // namespace

bool LoadClientSecurity(const ClientSecurity& s, grpc::SslCredentialsOptions* out,
                        std::string* error) {
  const std::pair<const std::string*, std::string*> files[] = {
      {&s.tls_ca, &out->pem_root_certs},
      {&s.tls_cert, &out->pem_cert_chain},
      {&s.tls_key, &out->pem_private_key}};
  for (const auto& [path, dest] : files) {
    if (!path->empty() && !ReadAll(*path, dest)) {
      *error = "cannot read " + *path;
      return false;
    }
  }
  return true;
}

VlmClient::VlmClient(const std::string& address, uint64_t max_message_bytes, bool own_connection,
                     ClientSecurity security)
    : api_key_(security.api_key) {
  grpc::ChannelArguments args;
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxSendMessageSize(static_cast<int>(std::min<uint64_t>(max_message_bytes, INT_MAX)));
  args.SetMaxReceiveMessageSize(static_cast<int>(std::min<uint64_t>(max_message_bytes, INT_MAX)));
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (security.tls()) {
    grpc::SslCredentialsOptions ssl;
    if (LoadClientSecurity(security, &ssl, &error_)) credentials = grpc::SslCredentials(ssl);
  }
  channel_ = grpc::CreateCustomChannel(address, credentials, args);
  stub_ = v1::VlmService::NewStub(channel_);
}

PredictOutcome VlmClient::Predict(const v1::PredictRequest& request,
                                  const std::function<void(const v1::TokenDelta&)>& on_delta,
                                  std::chrono::milliseconds timeout) {
  PredictOutcome out;
  grpc::ClientContext ctx;
  Authorize(&ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  auto reader = stub_->Predict(&ctx, request);
  v1::PredictResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_delta()) {
      ++out.deltas;
      out.streamed_text += msg.delta().text();
      if (on_delta) on_delta(msg.delta());
    } else if (msg.has_result()) {
      out.result = msg.result();
    }
  }
  out.status = reader->Finish();
  for (const auto& [k, v] : ctx.GetServerTrailingMetadata()) {
    out.trailers.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  }
  return out;
}

grpc::Status VlmClient::GetModelInfo(v1::ModelInfo* info) {
  grpc::ClientContext ctx;
  Authorize(&ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return stub_->GetModelInfo(&ctx, v1::GetModelInfoRequest(), info);
}

std::string VlmClient::Health(const std::string& service, grpc::Status* status) {
  // HealthCheckRequest{service}: field 1, length-delimited.
  std::string req;
  if (!service.empty()) {
    req.push_back(0x0a);
    req.push_back(static_cast<char>(service.size()));  // services are short names (< 128 bytes)
    req += service;
  }
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  Authorize(&ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice slice(req);
  grpc::ByteBuffer request_buffer(&slice, 1), response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status st;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_buffer,
                    &response, [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mu);
                      st = std::move(s);
                      done = true;
                      cv.notify_one();
                    });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  if (status) *status = st;
  if (!st.ok()) return st.error_message();
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status}: field 1, varint; absent means UNKNOWN (0).
  int value = 0;
  if (bytes.size() >= 2 && bytes[0] == 0x08) value = static_cast<uint8_t>(bytes[1]);
  switch (value) {
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
    default:
      return "UNKNOWN";
  }
}

}  // namespace vlmserve
