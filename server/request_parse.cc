// Wire-format checking and parsing of raw request bytes (see request_parse.h).
#include "server/request_parse.h"

#include <google/protobuf/descriptor.h>

#include <string>
#include <vector>

#include "common/utf8.h"

namespace vlmserve {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// Wire types (protobuf encoding spec).
enum WireType {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5
};

class WireChecker {
 public:
  WireChecker(std::string_view bytes, const WireLimits& limits)
      : data_(reinterpret_cast<const uint8_t*>(bytes.data())), limits_(limits) {}

  // Checks fields from pos_ up to `end`. `type` is null for the contents of unknown groups.
  // `group` is the field number of the enclosing group (its end tag ends this level), else 0.
  Status CheckMessage(size_t end, const Descriptor* type, int depth, uint32_t group) {
    if (depth > limits_.max_depth) {
      return Error(
          "messages or groups nested deeper than " + std::to_string(limits_.max_depth) + " levels",
          pos_);
    }
    while (pos_ < end) {
      const size_t tag_at = pos_;
      uint64_t tag = 0;
      RETURN_IF_ERROR(ReadVarint(end, &tag));
      const uint64_t number = tag >> 3;
      const int wire = static_cast<int>(tag & 7);
      if (number == 0 || number > FieldDescriptor::kMaxNumber) {
        return Error("invalid field number " + std::to_string(number), tag_at);
      }
      const FieldDescriptor* field =
          type ? type->FindFieldByNumber(static_cast<int>(number)) : nullptr;
      const std::string name = FieldName(field, number);
      switch (wire) {
        case kVarint: {
          uint64_t ignored;
          RETURN_IF_ERROR(ReadVarint(end, &ignored));
          break;
        }
        case kFixed64:
        case kFixed32: {
          const size_t n = wire == kFixed64 ? 8 : 4;
          if (end - pos_ < n) return Error(name + " needs " + std::to_string(n) + " bytes", pos_);
          pos_ += n;
          break;
        }
        case kLengthDelimited: {
          const size_t len_at = pos_;
          uint64_t len = 0;
          RETURN_IF_ERROR(ReadVarint(end, &len));
          if (len > end - pos_) {
            return Error(name + " declares " + std::to_string(len) + " bytes but " +
                             std::to_string(end - pos_) + " remain",
                         len_at);
          }
          const size_t field_end = pos_ + static_cast<size_t>(len);
          if (field && field->type() == FieldDescriptor::TYPE_MESSAGE) {
            RETURN_IF_ERROR(CheckMessage(field_end, field->message_type(), depth + 1, 0));
          } else if (field && field->type() == FieldDescriptor::TYPE_STRING) {
            const std::string_view text(reinterpret_cast<const char*>(data_ + pos_),
                                        field_end - pos_);
            if (const size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
              return Error(name + " is not valid UTF-8", pos_ + bad);
            }
          }
          pos_ = field_end;
          break;
        }
        case kStartGroup:
          // Groups are not part of proto3, but the wire format allows them in unknown fields.
          RETURN_IF_ERROR(CheckMessage(end, nullptr, depth + 1, static_cast<uint32_t>(number)));
          break;
        case kEndGroup:
          if (group != number) {
            return Error(group ? "end of group " + std::to_string(number) + " inside group " +
                                     std::to_string(group)
                               : "end-group tag " + std::to_string(number) + " outside any group",
                         tag_at);
          }
          return Status::Ok();
        default:
          return Error("invalid wire type " + std::to_string(wire) + " for " + name, tag_at);
      }
    }
    if (pos_ > end) return Error("a field runs past the end of its message", end);
    if (group != 0) return Error("group " + std::to_string(group) + " is never closed", end);
    return Status::Ok();
  }

 private:
  static std::string FieldName(const FieldDescriptor* field, uint64_t number) {
    return "field " + std::to_string(number) + (field ? " (" + field->name() + ")" : "");
  }

  Status ReadVarint(size_t end, uint64_t* value) {
    const size_t start = pos_;
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= end) return Error("truncated varint", start);
      const uint8_t b = data_[pos_++];
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) {
        *value = v;
        return Status::Ok();
      }
    }
    return Error("varint longer than 10 bytes", start);
  }

  static Status Error(const std::string& what, size_t at) {
    return InvalidArgumentError(what + " at byte " + std::to_string(at));
  }

  const uint8_t* data_;
  size_t pos_ = 0;
  const WireLimits& limits_;
};

}  // namespace

Status CheckWireFormat(std::string_view bytes, const Descriptor& type, const WireLimits& limits) {
  WireChecker checker(bytes, limits);
  return checker.CheckMessage(bytes.size(), &type, 0, 0);
}

Status ParseRequestBytes(std::string_view bytes, google::protobuf::Message* out) {
  const std::string what = "the request is not a valid " + out->GetDescriptor()->full_name();
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) {
    return InvalidArgumentError(what + ": larger than 2 GiB");
  }
  RETURN_IF_ERROR(CheckWireFormat(bytes, *out->GetDescriptor()).WithPrefix(what));
  // The checker accepted it, so protobuf should too; if not, say so without guessing.
  if (!out->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return InvalidArgumentError(what + ": protobuf could not parse it");
  }
  return Status::Ok();
}

Status ParseRequest(const grpc::ByteBuffer& in, google::protobuf::Message* out) {
  std::vector<grpc::Slice> slices;
  if (!in.Dump(&slices).ok()) return InvalidArgumentError("the request message could not be read");
  if (slices.size() == 1) {
    return ParseRequestBytes({reinterpret_cast<const char*>(slices[0].begin()), slices[0].size()},
                             out);
  }
  std::string joined;
  joined.reserve(in.Length());
  for (const grpc::Slice& s : slices)
    joined.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return ParseRequestBytes(joined, out);
}

grpc::ByteBuffer SerializeResponse(const google::protobuf::Message& message) {
  grpc::Slice slice(message.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace vlmserve
