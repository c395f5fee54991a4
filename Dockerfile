# One image with every binary (gateway, kms-sidecar, upstreams), run as the non-root
# user 10001; compose.yaml runs one service per container from it by command:
#   gateway --config /app/conf/docker/gateway.yaml   (the default command)
#   kms-entrypoint                                    (kms-sidecar: init once, then serve)
#   upstreams                                         (demo role services)
# Writable state lives under /var/lib/medgate (kms store, audit trail), owned by 10001
# with mode 0700; mount volumes there (compose.yaml does) so it survives containers.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gateway -p kms-sidecar -p upstreams \
    && mkdir /out && cp target/release/gateway target/release/kms-sidecar target/release/upstreams /out/

FROM debian:bookworm-slim
# curl: the compose health checks.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 medgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin medgate \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/medgate /var/lib/medgate/kms /var/lib/medgate/audit
WORKDIR /app
COPY --from=build /out/ /usr/local/bin/
COPY --chmod=0755 docker/kms-entrypoint.sh /usr/local/bin/kms-entrypoint
COPY conf/ /app/conf/
USER 10001:10001
VOLUME ["/var/lib/medgate/kms", "/var/lib/medgate/audit"]
# gateway proxy, gateway admin, sidecar public/admin, sidecar gateway channel
EXPOSE 8080 9090 8081 8082
CMD ["gateway", "--config", "/app/conf/docker/gateway.yaml"]
