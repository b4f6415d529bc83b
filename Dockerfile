# syntax=docker/dockerfile:1
#
# bouncer: one static binary in a distroless image.
#
#   docker build -t bouncer .
#   docker run --rm bouncer help
#   docker run --rm -e KAFKA_BROKERS=kafka:9092 -e CLICKHOUSE_ADDR=clickhouse:9000 bouncer worker
#
# docker-compose.yml builds this file for its `worker` and `migrate` services.
# Not built in this project's CI (no Docker engine there); see docs/production.md.

# Build on the builder's own platform and cross-compile (CGO is off), so
# `docker buildx build --platform linux/amd64,linux/arm64` needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
ARG TARGETOS
ARG TARGETARCH

# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -o /bouncer ./cmd/bouncer

# static: CA certificates (for KAFKA_TLS / CLICKHOUSE_TLS), tzdata, /etc/passwd;
# no shell, no package manager. Runs as the image's nonroot user, numerically
# so Kubernetes runAsNonRoot can verify it.
FROM gcr.io/distroless/static-debian13:nonroot
COPY --from=build /bouncer /bouncer
USER 65532:65532

# The ops server (/healthz, /readyz, /metrics) defaults to 127.0.0.1:9464,
# which nothing outside the container can reach; listen on every interface.
ENV BOUNCER_OPS_ADDR=0.0.0.0:9464 \
    BOUNCER_LOG_FORMAT=json
EXPOSE 9464

ENTRYPOINT ["/bouncer"]
CMD ["worker"]
