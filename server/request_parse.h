// Parsing request messages from their raw bytes ourselves (the service's methods are raw callback
// methods), so that a malformed message gets INVALID_ARGUMENT saying what is wrong and at which
// byte — a truncated message, a length past the end, an 11-byte varint, groups nested too deep,
// invalid UTF-8 in a proto3 string — instead of gRPC's bare UNIMPLEMENTED with no log line.
//
// CheckWireFormat walks the protobuf wire format with the message's descriptor: every tag, length
// and varint is bounds-checked, known sub-messages are checked recursively (depth-limited), and
// known `string` fields must be valid UTF-8 (what protobuf's parser would otherwise refuse with an
// ERROR line in the log). Only then is the message parsed, so the parser never logs.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <string_view>

#include "common/status.h"

namespace vlmserve {

struct WireLimits {
  int max_depth = 16;  // nested messages and groups; our API nests 3 levels
};

// OK when `bytes` is a well-formed encoding of `type` (unknown fields allowed, as protobuf does).
Status CheckWireFormat(std::string_view bytes, const google::protobuf::Descriptor& type,
                       const WireLimits& limits = {});

// The whole of a received message, checked and parsed into `out`. Errors are INVALID_ARGUMENT:
// "the request is not a valid vlmserve.v1.PredictRequest: <what> at byte <n>".
Status ParseRequestBytes(std::string_view bytes, google::protobuf::Message* out);
Status ParseRequest(const grpc::ByteBuffer& in, google::protobuf::Message* out);

// Serializes a response message into a ByteBuffer for a raw method's write.
grpc::ByteBuffer SerializeResponse(const google::protobuf::Message& message);

}  // namespace vlmserve
