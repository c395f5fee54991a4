# Shared by the load-test scripts (sourced, not run): a free loopback port, the nginx
# upstream every target proxies to, and the identity-header mapping of their gateway
# configs.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_upstream DIR PORT: nginx (1 worker, no access log) answering every request with
# a small 200 on 127.0.0.1:PORT, its config, pid file and error log in DIR, started in
# the background ($! is its pid).
start_upstream() {
  cat >"$1/upstream.conf" <<CONF
daemon off;
user root;
worker_processes 1;
pid $1/upstream.pid;
error_log $1/upstream.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$2;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
CONF
  nginx -p "$1" -c "$1/upstream.conf" &
}

# The gateway config's `headers:` block: sub, tenant and role as identity headers.
identity_headers_yaml() {
  cat <<YAML
headers:
  - { claim: sub, header: X-User-Id }
  - { claim: tenant_id, header: X-Tenant-Id }
  - { claim: role, header: X-User-Role }
YAML
}
