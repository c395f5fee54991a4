# Multi-stage build of every binary (gateway, kms-sidecar, upstreams) into a slim
# runtime image that runs as a non-root user.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gateway -p kms-sidecar -p upstreams \
    && mkdir /out && cp target/release/gateway target/release/kms-sidecar target/release/upstreams /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin gateway
WORKDIR /app
COPY --from=build /out/ /usr/local/bin/
COPY conf/ /app/conf/
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["--config", "/app/conf/gateway.yaml"]
