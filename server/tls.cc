// TLS material: checks with OpenSSL, private copies watched by gRPC (see tls.h).
#include "server/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <grpcpp/security/tls_credentials_options.h>
#include <sstream>

#include "common/json_util.h"

namespace vlmserve {
namespace {

constexpr uint64_t kMaxPemBytes = 1 << 20;

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return std::string(" (") + buf + ")";
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  auto text = ReadFileBounded(path, kMaxPemBytes);
  if (!text.ok()) return InvalidArgumentError(std::string(what) + " " + text.status().message());
  return text;
}

// Every certificate in a PEM bundle; INVALID_ARGUMENT if none or any is out of its dates.
Status CheckCertificates(const std::string& pem, const std::string& path, const char* what,
                         std::string* first_subject, std::unique_ptr<X509, X509Free>* first) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  int n = 0;
  for (;;) {
    std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    ++n;
    char subject[256] = {0};
    X509_NAME_oneline(X509_get_subject_name(cert.get()), subject, sizeof(subject) - 1);
    if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
      return InvalidArgumentError(std::string(what) + " " + path + ": certificate \"" + subject +
                                  "\" has expired");
    }
    if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) >= 0) {
      return InvalidArgumentError(std::string(what) + " " + path + ": certificate \"" + subject +
                                  "\" is not valid yet");
    }
    if (n == 1) {
      if (first_subject) *first_subject = subject;
      if (first) *first = std::move(cert);
    }
  }
  ERR_clear_error();  // the end of the bundle reads as an error
  if (n == 0) {
    return InvalidArgumentError(std::string(what) + " " + path + " holds no PEM certificate");
  }
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << data;
    if (!out.good()) return InternalError("cannot write " + tmp);
  }
  ::chmod(tmp.c_str(), 0600);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return InternalError("cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

Status CheckTlsFiles(const TlsFiles& f) {
  if (f.cert.empty() != f.key.empty()) {
    return InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (f.cert.empty()) {
    if (!f.client_ca.empty()) return InvalidArgumentError("--tls-client-ca needs --tls-cert/--tls-key");
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(std::string cert_pem, ReadPem(f.cert, "--tls-cert"));
  ASSIGN_OR_RETURN(std::string key_pem, ReadPem(f.key, "--tls-key"));
  std::unique_ptr<X509, X509Free> cert;
  RETURN_IF_ERROR(CheckCertificates(cert_pem, f.cert, "--tls-cert", nullptr, &cert));
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return InvalidArgumentError("--tls-key " + f.key + " holds no PEM private key" +
                                OpenSslError());
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("--tls-key " + f.key + " does not belong to the certificate in " +
                                f.cert);
  }
  if (!f.client_ca.empty()) {
    ASSIGN_OR_RETURN(std::string ca_pem, ReadPem(f.client_ca, "--tls-client-ca"));
    RETURN_IF_ERROR(CheckCertificates(ca_pem, f.client_ca, "--tls-client-ca", nullptr, nullptr));
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<TlsMaterial>> TlsMaterial::Create(const TlsFiles& files) {
  RETURN_IF_ERROR(CheckTlsFiles(files));
  std::unique_ptr<TlsMaterial> m(new TlsMaterial());
  m->files_ = files;
  std::string tmpl = (std::filesystem::temp_directory_path() / "vlmserve-tls-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) return InternalError("cannot create a private directory for TLS");
  m->dir_ = tmpl;
  RETURN_IF_ERROR(m->Install());
  const bool mtls = !files.client_ca.empty();
  // gRPC re-reads the copies every second; they change only when Reload() installs new ones.
  constexpr unsigned kRefreshSeconds = 1;
  if (mtls) {
    m->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        m->dir_ + "/key.pem", m->dir_ + "/cert.pem", m->dir_ + "/client_ca.pem", kRefreshSeconds);
  } else {
    m->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        m->dir_ + "/key.pem", m->dir_ + "/cert.pem", kRefreshSeconds);
  }
  grpc::experimental::TlsServerCredentialsOptions options(m->provider_);
  options.watch_identity_key_cert_pairs();
  if (mtls) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  m->credentials_ = grpc::experimental::TlsServerCredentials(options);
  if (!m->credentials_) return InternalError("gRPC refused the TLS options");
  m->description_ = std::string(mtls ? "mTLS" : "TLS") + " with " + files.cert +
                    (mtls ? ", client certificates from " + files.client_ca : "");
  return m;
}

TlsMaterial::~TlsMaterial() {
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

Status TlsMaterial::Install() {
  ASSIGN_OR_RETURN(std::string cert, ReadPem(files_.cert, "--tls-cert"));
  ASSIGN_OR_RETURN(std::string key, ReadPem(files_.key, "--tls-key"));
  RETURN_IF_ERROR(WriteFileAtomically(dir_ + "/cert.pem", cert));
  RETURN_IF_ERROR(WriteFileAtomically(dir_ + "/key.pem", key));
  if (!files_.client_ca.empty()) {
    ASSIGN_OR_RETURN(std::string ca, ReadPem(files_.client_ca, "--tls-client-ca"));
    RETURN_IF_ERROR(WriteFileAtomically(dir_ + "/client_ca.pem", ca));
  }
  return Status::Ok();
}

Status TlsMaterial::Reload() {
  RETURN_IF_ERROR(CheckTlsFiles(files_));
  return Install();
}

}  // namespace vlmserve
