// Request validation: every cheap check on a PredictRequest, before any image is decoded or any
// text tokenized (reliability.md rule 2), and the conversion to the engine's native ServeRequest
// (protobuf types never leave server/). Every failure is INVALID_ARGUMENT with a message naming
// the field and, for limits, the limit.
#pragma once

#include <string>

#include "common/status.h"
#include "engine/serve_engine.h"
#include "server/options.h"
#include "vlmserve/v1/vlmserve.pb.h"

namespace vlmserve {

inline constexpr uint32_t kMaxLogprobs = 20;  // GenerationOptions.logprobs

struct ModelFacts {  // what validation needs to know about the served model
  bool has_vision = true;
  int64_t vocab_size = 0;
};

// Ids (request_id, session_id): 1 to `max_bytes` characters of [A-Za-z0-9._:-] (empty means
// none). Checked before anything else, because ids are echoed in metadata and logs.
Status CheckId(const std::string& id, const char* field, uint64_t max_bytes);

// `request_id` is the id to use (the request's own when valid, else `fallback_id` when empty).
// The request's byte fields (images, prompts) are moved into the result, not copied.
StatusOr<ServeRequest> ValidatePredictRequest(v1::PredictRequest& request,
                                              const ServerOptions& options, const ModelFacts& model,
                                              const std::string& fallback_id);

}  // namespace vlmserve
