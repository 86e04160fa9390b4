// Shared client flags for TLS and API keys (vlmserve-client, vlmserve-bench).
#pragma once

#include <CLI/CLI.hpp>

#include "client/client.h"

// --tls-ca, --tls-cert, --tls-key, --api-key (or $VLMSERVE_API_KEY) on `app` (every subcommand).
inline void AddSecurityOptions(CLI::App& app, vlmserve::ClientSecurity* s) {
  app.add_option("--tls-ca", s->tls_ca, "TLS: trust this CA (PEM); TLS is used when given")
      ->group("Security");
  app.add_option("--tls-cert", s->tls_cert, "mTLS: our client certificate (PEM)")
      ->group("Security");
  app.add_option("--tls-key", s->tls_key, "mTLS: our client key (PEM)")->group("Security");
  app.add_option("--api-key", s->api_key,
                 "API key, sent as 'authorization: Bearer KEY' (default: $VLMSERVE_API_KEY; "
                 "prefer the variable: arguments show in process lists)")
      ->envname("VLMSERVE_API_KEY")
      ->group("Security");
}
