// Who is calling, and how much they may ask.
//
// ApiKeys: the keys of --api-key-file, one per line, "name:key" or just "key" (named key-N by its
// line), '#' comments and blank lines ignored. The file must not be readable or writable by group
// or others (chmod 600), a key is 16 to 256 printable characters without spaces or ':' — a
// mistake is one clear error at start, and at reload (SIGHUP) the old keys stay. Clients send
// "authorization: Bearer KEY". Keys are kept only as SHA-256 digests and a presented key is
// compared with every one of them in constant time (no early exit on the first byte or the first
// key), so neither its bytes nor which key matched leak through timing. Keys never reach a log.
//
// ClientLimiter: per client — the key's name, or the peer's address without its port when no keys
// are configured — at most N calls at once and a token bucket of R calls per second (burst R).
// Over a limit: RESOURCE_EXHAUSTED with a retry hint, so one client cannot starve the others.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vlmserve {

class ApiKeys {
 public:
  static StatusOr<std::shared_ptr<const ApiKeys>> Load(const std::string& path);
  // The name of the key in an "authorization" header value ("Bearer KEY"), or nullopt.
  std::optional<std::string> Authenticate(std::string_view authorization) const;
  size_t size() const { return keys_.size(); }

 private:
  struct Key {
    std::string name;
    std::array<uint8_t, 32> digest;
  };
  std::vector<Key> keys_;
};

struct ClientLimits {
  uint32_t max_concurrent = 0;  // 0 = no limit
  double max_rps = 0;           // 0 = no limit
};

class ClientLimiter {
 public:
  explicit ClientLimiter(ClientLimits limits) : limits_(limits) {}
  // Takes one call slot for `client`: OK, or RESOURCE_EXHAUSTED saying which limit, with
  // `retry_after_ms` set. Every OK is paired with one Release().
  Status Acquire(const std::string& client, int64_t* retry_after_ms);
  void Release(const std::string& client);
  bool enabled() const { return limits_.max_concurrent > 0 || limits_.max_rps > 0; }
  size_t clients() const;

 private:
  using Clock = std::chrono::steady_clock;
  // The bucket holds max_rps calls, and at least one: below 1 call per second (0.5 = one call
  // every 2 s) a smaller bucket could never pay for a call.
  double Burst() const { return std::max(1.0, limits_.max_rps); }
  struct State {
    uint32_t running = 0;
    double tokens = 0;
    Clock::time_point refilled;
  };
  ClientLimits limits_;
  mutable std::mutex mu_;
  std::map<std::string, State> clients_;
};

// "ipv4:1.2.3.4:5678" → "1.2.3.4", "ipv6:[::1]:5678" → "[::1]"; anything else as it is.
std::string PeerHost(const std::string& peer);

}  // namespace vlmserve
