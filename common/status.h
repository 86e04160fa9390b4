// Status and StatusOr<T>: how every layer of vlmserve reports errors (no exceptions across library
// boundaries). The codes mirror gRPC's so that server/ can map them in one function; a Status
// carries a human-readable message that names what was wrong (file, field, limit).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace vlmserve {

enum class StatusCode {
  kOk = 0,
  kCancelled,
  kInvalidArgument,   // bad input: a request, a model file, a flag
  kDeadlineExceeded,
  kNotFound,          // a file or tensor that should exist does not
  kResourceExhausted, // capacity only (queue full, device memory)
  kFailedPrecondition,
  kOutOfRange,
  kUnimplemented,     // a valid input this build does not support (e.g. a RoPE type)
  kInternal,          // a bug or a device failure
  kUnavailable,       // no device, draining
  kUnauthenticated,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: config.json: text_config.hidden_size: ..."; "OK" for success.
  std::string ToString() const;
  // Returns a copy whose message is `prefix + ": " + message` (adds context on the way up).
  Status WithPrefix(const std::string& prefix) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgumentError(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status UnimplementedError(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status ResourceExhaustedError(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status OutOfRangeError(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }

// A value or the Status explaining why there is none. Accessing value() of an error is a bug.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // An OK status without a value is a bug; it becomes INTERNAL rather than an empty "success".
  StatusOr(Status status)  // NOLINT: implicit by design
      : status_(status.ok() ? InternalError("StatusOr built from an OK status without a value")
                            : std::move(status)) {}
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace vlmserve

#define VLMSERVE_CONCAT_INNER_(a, b) a##b
#define VLMSERVE_CONCAT_(a, b) VLMSERVE_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::vlmserve::Status vlmserve_status_ = (expr);      \
    if (!vlmserve_status_.ok()) return vlmserve_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` declares x from a StatusOr or returns its error. It expands to
// several statements: inside an `if`, use braces.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(VLMSERVE_CONCAT_(vlmserve_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()
