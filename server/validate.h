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

struct ModelFacts {  // what validation needs to know about the served model
  bool has_vision = true;
  int64_t vocab_size = 0;
};

// `request_id` is the id to use (the request's own when valid, else `fallback_id` when empty).
StatusOr<ServeRequest> ValidatePredictRequest(const v1::PredictRequest& request,
                                              const ServerOptions& options, const ModelFacts& model,
                                              const std::string& fallback_id);

}  // namespace vlmserve
