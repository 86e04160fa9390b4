// API keys and per-client limits (see auth.h).
#include "server/auth.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/json_util.h"

namespace vlmserve {
namespace {

// OpenSSL's SHA-256 (common/sha256.h is for goldens, not for secrets).
std::array<uint8_t, 32> Digest(std::string_view s) {
  std::array<uint8_t, 32> d{};
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), d.data(), &n, EVP_sha256(), nullptr);
  return d;
}

bool KeyChar(char c) { return c > 0x20 && c < 0x7f && c != ':'; }
bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

}  // namespace

StatusOr<std::shared_ptr<const ApiKeys>> ApiKeys::Load(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return NotFoundError("--api-key-file " + path + " not found");
  if (st.st_mode & 077) {
    return InvalidArgumentError("--api-key-file " + path +
                                " is readable or writable by group or others; chmod 600 it");
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileBounded(path, 1 << 20));
  auto keys = std::make_shared<ApiKeys>();
  std::istringstream in(text);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    const std::string where = "--api-key-file " + path + " line " + std::to_string(line_no);
    std::string name = "key-" + std::to_string(line_no), key = line;
    if (const size_t colon = line.find(':'); colon != std::string::npos) {
      name = line.substr(0, colon);
      key = line.substr(colon + 1);
      if (name.empty() || name.size() > 64 || !std::all_of(name.begin(), name.end(), NameChar)) {
        return InvalidArgumentError(where + ": a name is 1 to 64 characters of [A-Za-z0-9._-]");
      }
    }
    if (key.size() < 16 || key.size() > 256 || !std::all_of(key.begin(), key.end(), KeyChar)) {
      return InvalidArgumentError(where +
                                  ": a key is 16 to 256 printable characters without spaces "
                                  "or ':'");
    }
    for (const Key& k : keys->keys_) {
      if (k.name == name)
        return InvalidArgumentError(where + ": the name " + name + " is used twice");
      if (k.digest == Digest(key)) return InvalidArgumentError(where + ": a key is listed twice");
    }
    keys->keys_.push_back({name, Digest(key)});
  }
  if (keys->keys_.empty()) return InvalidArgumentError("--api-key-file " + path + " holds no key");
  return std::shared_ptr<const ApiKeys>(std::move(keys));
}

std::optional<std::string> ApiKeys::Authenticate(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  const bool bearer = authorization.substr(0, kBearer.size()) == kBearer;
  const std::array<uint8_t, 32> d =
      Digest(bearer ? authorization.substr(kBearer.size()) : std::string_view{});
  // Every key is compared in full, whatever matched: the time does not depend on the bytes.
  size_t match = keys_.size();
  for (size_t i = 0; i < keys_.size(); ++i) {
    uint8_t diff = 0;
    for (size_t b = 0; b < d.size(); ++b) diff |= static_cast<uint8_t>(d[b] ^ keys_[i].digest[b]);
    const size_t is = static_cast<size_t>(diff == 0);
    match = is * i + (1 - is) * match;
  }
  if (!bearer || match == keys_.size()) return std::nullopt;
  return keys_[match].name;
}

Status ClientLimiter::Acquire(const std::string& client, int64_t* retry_after_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = Clock::now();
  auto [it, fresh] = clients_.try_emplace(client);
  State& s = it->second;
  if (fresh) {
    s.tokens = Burst();
    s.refilled = now;
    // Forget idle clients so that many peers cannot grow the table without bound.
    if (clients_.size() > 4096) {
      for (auto i = clients_.begin(); i != clients_.end();) {
        const double idle = std::chrono::duration<double>(now - i->second.refilled).count();
        if (i->second.running == 0 && i->first != client &&
            (limits_.max_rps <= 0 || i->second.tokens + idle * limits_.max_rps >= Burst()))
          i = clients_.erase(i);
        else
          ++i;
      }
    }
  }
  if (limits_.max_concurrent > 0 && s.running >= limits_.max_concurrent) {
    *retry_after_ms = 100;
    return ResourceExhaustedError("this client already has " + std::to_string(s.running) +
                                  " calls running, the limit per client " +
                                  "(--max-concurrent-per-client); retry later");
  }
  if (limits_.max_rps > 0) {
    const double elapsed = std::chrono::duration<double>(now - s.refilled).count();
    s.tokens = std::min(Burst(), s.tokens + elapsed * limits_.max_rps);
    s.refilled = now;
    if (s.tokens < 1) {
      *retry_after_ms = static_cast<int64_t>(std::ceil((1 - s.tokens) / limits_.max_rps * 1000));
      return ResourceExhaustedError("this client is over its rate limit of " +
                                    std::to_string(limits_.max_rps) +
                                    " calls per second (--max-rps-per-client); retry later");
    }
    s.tokens -= 1;
  }
  ++s.running;
  return Status::Ok();
}

void ClientLimiter::Release(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = clients_.find(client);
  if (it != clients_.end() && it->second.running > 0) --it->second.running;
}

size_t ClientLimiter::clients() const {
  std::lock_guard<std::mutex> lock(mu_);
  return clients_.size();
}

std::string PeerHost(const std::string& peer) {
  std::string p = peer;
  for (const char* scheme : {"ipv4:", "ipv6:"}) {
    if (p.rfind(scheme, 0) == 0) {
      p = p.substr(5);
      if (const size_t colon = p.rfind(':'); colon != std::string::npos) p = p.substr(0, colon);
      return p;
    }
  }
  return p;
}

}  // namespace vlmserve
