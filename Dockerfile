# caddy-neo image: built with xcaddy from xcaddy.json, run as a non-root user.
#   docker build -t caddy-neo .
#   docker run -p 80:80 -p 443:443 -p 443:443/udp caddy-neo
# Pins follow xcaddy.json's caddy_version; integration/dockerfile_test.go checks them.
FROM caddy:2.11.9-builder AS builder
# Several plugins are not in the public checksum database (see xcaddy.json).
ENV GONOSUMDB=github.com/corazawaf/coraza-caddy,github.com/greenpau,github.com/mholt/caddy-ratelimit
WORKDIR /src
COPY . .
RUN go run ./cmd/neo-build -manifest xcaddy.json -o /usr/bin/caddy

FROM caddy:2.11.9
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY caddyfiles/ /etc/caddy/caddyfiles/
RUN addgroup -S neo && adduser -S -G neo -h /home/neo neo \
 && mkdir -p /data /config && chown -R neo:neo /data /config \
 && setcap cap_net_bind_service=+ep /usr/bin/caddy
USER neo
EXPOSE 80 443 443/udp
CMD ["caddy", "run", "--config", "/etc/caddy/caddyfiles/edge.Caddyfile", "--adapter", "caddyfile"]
