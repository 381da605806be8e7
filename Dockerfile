# syntax=docker/dockerfile:1
# SPDX-License-Identifier: Apache-2.0
# learnd's container image: built on Debian bookworm (the distribution whose
# librdkafka, avro-c, protobuf-c and OpenBLAS learnd is tested with), run as
# a non-root user with nothing but the runtime libraries.
#
#   docker build -t learnd .
#   docker run --rm learnd --version
#   docker run --rm -v learnd-models:/var/lib/learnd \
#     -e LEARND_BOOTSTRAP=kafka:9092 learnd            # run -c /etc/learnd/learnd.yaml
#
# The default config is packaging/learnd.yaml; mount your own over
# /etc/learnd/learnd.yaml. The model store (checkpoint.dir) is the volume
# /var/lib/learnd. Metrics listen on 0.0.0.0:9464 (LEARND_METRICS_LISTEN).

ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---- build ---------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev libavro-dev libprotobuf-c-dev protobuf-c-compiler \
      libopenblas-dev libyaml-dev libmicrohttpd-dev libjansson-dev \
      libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          -DCMAKE_INSTALL_PREFIX=/usr \
 && cmake --build /build --target learnd -j"$(nproc)" \
 && DESTDIR=/staging cmake --install /build --component learnd \
 && install -D -m 0755 packaging/docker/healthcheck.sh \
      /staging/usr/libexec/learnd/healthcheck \
 && /staging/usr/bin/learnd --version \
 && /staging/usr/bin/learnd config check -c /staging/etc/learnd/learnd.yaml

# ---- runtime -------------------------------------------------------------
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 libavro23 libprotobuf-c1 libopenblas0-pthread \
      libyaml-0-2 libmicrohttpd12 libjansson4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 learnd \
 && useradd --system --uid 10001 --gid learnd --home-dir /var/lib/learnd \
      --no-create-home --shell /usr/sbin/nologin learnd \
 && install -d -o learnd -g learnd -m 0750 /var/lib/learnd /var/lib/learnd/models
COPY --from=build /staging/ /

ENV OPENBLAS_NUM_THREADS=1 \
    LEARND_METRICS_LISTEN=0.0.0.0 \
    LEARND_METRICS_PORT=9464
USER learnd:learnd
WORKDIR /var/lib/learnd
VOLUME ["/var/lib/learnd"]
EXPOSE 9464
# /healthz: 200 while the run loop advances, 503 when it stalled.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/libexec/learnd/healthcheck"]
# SIGTERM is a clean stop (commit point, consumer closed) within
# daemon.shutdown_timeout (30s): give `docker stop` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/learnd"]
CMD ["run", "-c", "/etc/learnd/learnd.yaml"]
