# vmfront: the proxy in a container. Multi-stage: production dependencies are
# installed in the first stage; the runtime image has no npm cache or dev tools
# and runs as an unprivileged user (Docker lets containers bind ports < 1024
# without root: net.ipv4.ip_unprivileged_port_start is 0 in containers).
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
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
EXPOSE 80 443
# Mount your config at /etc/vmfront/proxy.toml (see examples/proxy.toml);
# SIGHUP reloads routes (docker kill -s HUP), SIGTERM drains then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/proxy/cli.ts"]
CMD ["proxy", "--config", "/etc/vmfront/proxy.toml"]
