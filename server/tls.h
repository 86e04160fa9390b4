// TLS for the gRPC listener: the operator's PEM files are checked with OpenSSL before use (readable,
// a certificate and a private key that belong together, inside their validity dates; for mTLS a
// client CA bundle), then copied into a private directory that gRPC's file-watching certificate
// provider reads. Reload() (SIGHUP) checks the files again and, only if they are good, replaces
// the copies: gRPC picks them up within a second for new handshakes; running streams keep their
// connections. Bad material at start is one clear error; bad material at reload is logged and the
// old material stays.
#pragma once

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace vlmserve {

struct TlsFiles {
  std::string cert, key;  // the server's certificate chain and private key (PEM)
  std::string client_ca;  // mTLS: clients must present a certificate signed by one of these
};

// INVALID_ARGUMENT naming the file and what is wrong (unreadable, not PEM, key does not match the
// certificate, expired or not yet valid).
Status CheckTlsFiles(const TlsFiles& files);

class TlsMaterial {
 public:
  static StatusOr<std::unique_ptr<TlsMaterial>> Create(const TlsFiles& files);
  ~TlsMaterial();
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }
  // Checks the operator's files again and installs them for new connections.
  Status Reload();
  // The certificate's subject and notAfter, for the start-up log.
  const std::string& description() const { return description_; }

 private:
  TlsMaterial() = default;
  Status Install();
  TlsFiles files_;
  std::string dir_;  // the private copies gRPC watches
  std::string description_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider_;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

}  // namespace vlmserve
