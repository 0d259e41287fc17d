/**
 * @module test/bench/configs
 * Generated configuration text for every benchmarked server: the nginx backend,
 * nginx / HAProxy / Caddy as reverse proxies, and vmfront (direct and chained).
 * Each runs in the foreground as the current user, with its files in `dir`.
 */

/** The Host header the bench sends, and the one domain in vmfront's route file. */
export const BENCH_DOMAIN = 'bench.test'

/** Pre-shared key between the chained vmfront parent and child (>= 16 characters). */
const CHAIN_PSK = 'bench-chain-psk-0123456789'

/** nginx's shared top: one worker, no master (so no user switch), files in `dir`. */
function nginxTop (dir: string, http: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
${http}
}
`
}

/** The backend: a 3-byte "ok\n" answer over keep-alive. */
export function nginxBackendConf (dir: string, port: number): string {
  return nginxTop(dir, `  server {
    listen 127.0.0.1:${port};
    location / { default_type text/plain; return 200 "ok\\n"; }
  }`)
}

/** nginx as a reverse proxy with a keep-alive upstream pool. */
export function nginxProxyConf (dir: string, port: number, backendPort: number): string {
  return nginxTop(dir, `  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 128;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }`)
}

/** HAProxy in HTTP mode, one thread, server connections shared across clients. */
export function haproxyConf (port: number, backendPort: number): string {
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always

frontend bench
  bind 127.0.0.1:${port}
  default_backend backend

backend backend
  server s1 127.0.0.1:${backendPort}
`
}

/** Caddy's `reverse_proxy` on plain HTTP: no admin endpoint, no automatic HTTPS. */
export function caddyfile (port: number, backendPort: number): string {
  return `{
\tadmin off
\tauto_https off
}

http://:${port} {
\tbind 127.0.0.1
\treverse_proxy 127.0.0.1:${backendPort}
}
`
}

export interface VmfrontPorts {
  http: number
  admin: number
}

export type ChainRole =
  | { mode: 'none' }
  | { mode: 'parent', apiPort: number }
  | { mode: 'child', apiPort: number, childPort: number }

/**
 * vmfront as a user would run it (SPEC §3): metrics on the admin listener, the
 * access log on (stdout, which the bench sends to a file), a default rate profile
 * whose limits are active but never reached, HTTPS and ACME off.
 */
export function vmfrontToml (dir: string, ports: VmfrontPorts, chain: ChainRole = { mode: 'none' }, workers = 1): string {
  let chainSection = ''
  if (chain.mode === 'parent') {
    chainSection = `
[chain]
mode = "parent"
parent_url = "http://127.0.0.1:${chain.apiPort}"
psk = "${CHAIN_PSK}"
lease_ttl = "60s"
`
  } else if (chain.mode === 'child') {
    chainSection = `
[chain]
mode = "child"
parent_url = "http://127.0.0.1:${chain.apiPort}"
child_url = "http://127.0.0.1:${chain.childPort}"
name = "bench-child"
psk = "${CHAIN_PSK}"
`
  }
  return `data_dir = "${dir}/data"
routes_file = "${dir}/routes.json"
pid_file = "${dir}/vmfront.pid"

[listen]
http = "127.0.0.1:${ports.http}"
https = ""
admin = "127.0.0.1:${ports.admin}"

[acme]
enabled = false

# One process unless asked: the HTTP table compares proxies on one core each.
[server]
workers = ${workers}

[[rate_profile]]
name = "default"
concurrent_max_requests = 100000
concurrent_overflow_timeout = "2s"
limit_burst_requests = 1000000
limit_requests_per_second = 1000000
limit_max_delay = "0s"
${chainSection}`
}

/** A SPEC §4 route file: the bench domain to `backendPort`, or no routes at all. */
export function routesJson (backendPort?: number): string {
  const routes = backendPort === undefined
    ? []
    : [{ domain: BENCH_DOMAIN, target: `http://127.0.0.1:${backendPort}`, rate_profile: 'default' }]
  return JSON.stringify({ version: 1, routes }, null, 2) + '\n'
}
