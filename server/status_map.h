// The one place where a vlmserve Status becomes a gRPC status (design.md §4, reliability.md
// rule 4): per-request problems and limits → INVALID_ARGUMENT; capacity → RESOURCE_EXHAUSTED;
// loading/draining → UNAVAILABLE; cancel/deadline → CANCELLED/DEADLINE_EXCEEDED; anything else is
// a bug → INTERNAL, with the request id so the log line can be found.
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "common/status.h"

namespace vlmserve {

grpc::Status ToGrpcStatus(const Status& status, const std::string& request_id);

// "INVALID_ARGUMENT", … for logs.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace vlmserve
