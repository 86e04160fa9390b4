// Fuzz target: arbitrary bytes as a received PredictRequest, through the service's own parser
// (server/request_parse.h: wire-format check, then protobuf) and ValidatePredictRequest. Neither
// may crash; a refusal is INVALID_ARGUMENT with a message; the wire check must accept everything
// protobuf's parser accepts as valid proto3 (so no valid request is refused); and what validation
// accepts must respect every limit it claims to enforce — the engine relies on that.
#include <cmath>
#include <cstdlib>

#include "server/request_parse.h"
#include "server/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vlmserve::v1::PredictRequest req;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const vlmserve::Status parsed = vlmserve::ParseRequestBytes(bytes, &req);
  if (!parsed.ok()) {
    if (parsed.code() != vlmserve::StatusCode::kInvalidArgument || parsed.message().empty())
      std::abort();
    return 0;
  }
  static const vlmserve::ServerOptions options = [] {
    vlmserve::ServerOptions o;
    o.max_prompt_bytes = 256;
    o.image.max_encoded_bytes = 4096;
    o.image.max_side = 64;
    o.image.max_pixels = 64 * 64;
    return o;
  }();
  for (bool vision : {true, false}) {
    const vlmserve::ModelFacts model{vision, 1000};
    vlmserve::v1::PredictRequest copy = req;  // validation moves the byte fields out
    auto r = vlmserve::ValidatePredictRequest(copy, options, model, "fallback-id");
    if (!r.ok()) {
      if (r.status().code() != vlmserve::StatusCode::kInvalidArgument ||
          r.status().message().empty())
        std::abort();
      continue;
    }
    if (r->request_id.empty() || r->request_id.size() > options.max_request_id_bytes) std::abort();
    if (r->images.frames.size() > options.max_frames) std::abort();
    if (!r->images.frames.empty() && r->images.grid) std::abort();
    if (vision == (r->images.frames.empty() && !r->images.grid)) std::abort();
    if (r->prompt.size() > options.max_prompt_bytes) std::abort();
    if (r->max_new_tokens < 1 ||
        r->max_new_tokens > static_cast<int32_t>(options.max_new_tokens_cap))
      std::abort();
    const auto& s = r->sampling;
    if (s.top_k < 0 || s.top_k > model.vocab_size) std::abort();
    if (!(s.temperature >= 0) || !std::isfinite(s.temperature) || !(s.top_p > 0 && s.top_p <= 1))
      std::abort();
    for (const auto& f : r->images.frames) {
      if (f.raw && f.bytes.size() != uint64_t{f.width} * f.height * 3) std::abort();
      if (!f.raw && (f.bytes.empty() || f.bytes.size() > options.image.max_encoded_bytes))
        std::abort();
    }
  }
  return 0;
}
