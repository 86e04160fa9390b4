// The one place where a vlmserve Status becomes a gRPC status (design.md §4, reliability.md
// rule 4): per-request problems and limits → INVALID_ARGUMENT; capacity → RESOURCE_EXHAUSTED;
// loading/draining → UNAVAILABLE; cancel/deadline → CANCELLED/DEADLINE_EXCEEDED; a valid request
// asking for something this server does not do → UNIMPLEMENTED; a state the request cannot be
// served in → FAILED_PRECONDITION; anything else is a bug → INTERNAL, with the request id so the
// log line can be found. Every message leaves as valid UTF-8 of at most 1 KiB without control
// characters (common/text_safety.h), whatever bytes reached it.
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "common/status.h"

namespace vlmserve {

// `request_id` must be a validated or server-made id (it is put into INTERNAL messages as is).
grpc::Status ToGrpcStatus(const Status& status, const std::string& request_id);

// "INVALID_ARGUMENT", … for logs.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace vlmserve
