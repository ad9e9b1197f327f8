# caddy-neo image: built with xcaddy from xcaddy.json, run as a non-root user.
#   docker build -t caddy-neo .
#   docker run -p 80:80 -p 443:443 -p 443:443/udp -v caddy-neo-data:/data -v caddy-neo-config:/config \
#     -e NEO_IDENTITY_KEK=… -e NEO_NATS_EDGE_PASSWORD=… -e NEO_NATS_URL=nats://… caddy-neo
# The default command is the edge role (caddyfiles/edge.Caddyfile); it refuses to
# start without its secrets. Pins follow xcaddy.json's caddy_version
# (go run ./cmd/neo-build -check); integration/image_test.go lays out a root
# directory as this file does and runs its CMD and HEALTHCHECK as its USER.
FROM caddy:2.11.9-builder AS builder
# Several plugins are not in the public checksum database (see xcaddy.json).
ENV GONOSUMDB=github.com/corazawaf/coraza-caddy,github.com/greenpau,github.com/mholt/caddy-ratelimit
# A static binary: the runtime image has no C library of the build's.
ENV CGO_ENABLED=0
WORKDIR /src
COPY . .
RUN go run ./cmd/neo-build -manifest xcaddy.json -o /usr/bin/caddy

FROM caddy:2.11.9
# Every path the image writes is under its volumes: Caddy's data
# (certificates, the internal CA, run-time tenants in /data/caddy/neo/tenants)
# and config (autosave.json) directories, as the base image sets them, and
# the temporary files of large request bodies (WAF).
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
ENV TMPDIR=/data/tmp
# The edge role's admin address, also where the health check asks.
ENV NEO_ADMIN=localhost:2020
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY caddyfiles/ /etc/caddy/caddyfiles/
RUN addgroup -S -g 10001 neo && adduser -S -u 10001 -G neo -h /home/neo -s /sbin/nologin neo \
 && mkdir -p /data /config && chown -R 10001:10001 /data /config \
 && setcap cap_net_bind_service=+ep /usr/bin/caddy
VOLUME ["/data", "/config"]
# Numeric, so that a runtime can check it is not root (runAsNonRoot).
USER 10001:10001
WORKDIR /etc/caddy
EXPOSE 80 443 443/udp
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["caddy", "neo-health"]
CMD ["caddy", "run", "--config", "/etc/caddy/caddyfiles/edge.Caddyfile", "--adapter", "caddyfile"]
