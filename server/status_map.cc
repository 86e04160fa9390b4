// Status → gRPC status (see status_map.h).
#include "server/status_map.h"

#include "common/text_safety.h"

namespace vlmserve {

grpc::Status ToGrpcStatus(const Status& s, const std::string& request_id) {
  const std::string message = SanitizeForClient(s.message());
  switch (s.code()) {
    case StatusCode::kOk:
      return grpc::Status::OK;
    // Everything a request can get wrong, including its limits and a prompt that overflows the
    // context (the runner reports that as OUT_OF_RANGE).
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return {grpc::StatusCode::INVALID_ARGUMENT, message};
    // A well-formed request for something this server does not do (e.g. a feature of a runner).
    case StatusCode::kUnimplemented:
      return {grpc::StatusCode::UNIMPLEMENTED, message};
    case StatusCode::kFailedPrecondition:
      return {grpc::StatusCode::FAILED_PRECONDITION, message};
    case StatusCode::kResourceExhausted:
      return {grpc::StatusCode::RESOURCE_EXHAUSTED, message};
    case StatusCode::kUnavailable:
      return {grpc::StatusCode::UNAVAILABLE, message};
    case StatusCode::kCancelled:
      return {grpc::StatusCode::CANCELLED, message};
    case StatusCode::kDeadlineExceeded:
      return {grpc::StatusCode::DEADLINE_EXCEEDED, message};
    case StatusCode::kUnauthenticated:
      return {grpc::StatusCode::UNAUTHENTICATED, message};
    // A missing sequence or tensor inside the engine is a bug, not something a client asked for.
    case StatusCode::kNotFound:
    case StatusCode::kInternal:
      break;
  }
  return {grpc::StatusCode::INTERNAL,
          SanitizeForClient("internal error (request " + request_id + "): " + s.message())};
}

const char* GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "?";
  }
}

}  // namespace vlmserve
