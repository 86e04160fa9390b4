# vlmserve container image: one file, two variants, built the way CI builds (scripts/bootstrap.sh).
#
#   docker build -t vlmserve:gpu .                          # NVIDIA CUDA 13, Ubuntu 24.04 (default)
#   docker build -t vlmserve:cpu --build-arg VARIANT=cpu .  # Debian 12, CPU only
#   docker run --gpus all -p 50051:50051 vlmserve:gpu       # serves the built-in model
#   docker run -p 50051:50051 -v /models/gemma-3-4b-it:/models/m:ro vlmserve:cpu --model /models/m
#
# The bases are build arguments (a mirror, or an image made locally — scripts/container_test.sh
# builds the CPU variant from a debootstrapped Debian 12 with no registry). Runtime: a non-root
# user, /opt/vlmserve/{bin,share}, only the shared libraries the binaries link (found with ldd in
# the build stage), `--listen 0.0.0.0` (the container's interface; what reaches it is the port
# mapping's business — add TLS or API keys before exposing it, deploy/README.md), SIGTERM drains for
# 8 s, inside Docker's default 10 s stop timeout.
ARG VARIANT=gpu
ARG GPU_BUILD_BASE=nvidia/cuda:13.0.0-devel-ubuntu24.04
ARG GPU_RUNTIME_BASE=nvidia/cuda:13.0.0-runtime-ubuntu24.04
ARG CPU_BASE=debian:12-slim

FROM ${GPU_BUILD_BASE} AS build-gpu
ENV VLMSERVE_CUDA=ON
FROM ${CPU_BASE} AS build-cpu
ENV VLMSERVE_CUDA=OFF

# hadolint ignore=DL3006
FROM build-${VARIANT} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY . /src
# bootstrap.sh installs the build dependencies (the same list CI uses); only the shipped programs
# are built; the runtime's package list is derived from what they link.
RUN scripts/bootstrap.sh --build-dir /src/build --type Release --no-build \
 && cmake --build /src/build -j "$(nproc)" --target vlmserve vlmserve-client vlmserve-bench \
      vlmserve-generate vlmserve-inspect vlmserve-tokenize vlmserve-preprocess vlmserve_builtin_model \
 && cmake --install /src/build --prefix /opt/vlmserve \
 && deploy/runtime-packages.sh /opt/vlmserve/bin > /opt/vlmserve/runtime-packages.txt

FROM ${GPU_RUNTIME_BASE} AS runtime-gpu
FROM ${CPU_BASE} AS runtime-cpu

# hadolint ignore=DL3006
FROM runtime-${VARIANT}
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/vlmserve /opt/vlmserve
# hadolint ignore=DL3008
RUN apt-get update \
 && xargs -a /opt/vlmserve/runtime-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin vlmserve
USER 10001
EXPOSE 50051
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
  CMD ["/opt/vlmserve/bin/vlmserve-client", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["/opt/vlmserve/bin/vlmserve", "--listen", "0.0.0.0", "--port", "50051", "--drain-timeout", "8"]
