#!/usr/bin/env bash
# Checks compose.yaml and the container configs without a Docker daemon:
# `docker compose config` (or docker-compose) when present, then a structural check
# in python3 (the services, their commands, the credentials each one is given, the
# addresses conf/docker/gateway.yaml names, the volumes the configs write to), then
# `gateway --check` on conf/docker/gateway.yaml with the target/debug binary if built.
set -euo pipefail
cd "$(dirname "$0")/.."
export KMS_MASTER_KEY=check KMS_ADMIN_TOKEN=check-admin-token-0000 \
  KMS_GATEWAY_TOKEN=check-gateway-token-000 GATEWAY_ADMIN_TOKEN=check-gateway-admin-000
if docker compose version >/dev/null 2>&1; then docker compose -f compose.yaml config -q
elif command -v docker-compose >/dev/null; then docker-compose -f compose.yaml config -q; fi
python3 - <<'PY'
import re, sys, yaml
c = yaml.safe_load(open("compose.yaml"))
gw = yaml.safe_load(open("conf/docker/gateway.yaml"))
kms = yaml.safe_load(open("conf/docker/kms.yaml"))
errs = []
def need(ok, msg):
    if not ok: errs.append(msg)
s = c.get("services", {})
need(set(s) == {"kms-sidecar", "upstreams", "gateway"}, f"services: {sorted(s)}")
for name, svc in s.items():
    need(svc.get("image") == "medgate:latest" and svc.get("build") == ".", f"{name}: image/build")
    need(isinstance(svc.get("command"), list), f"{name}: command must be a list")
    need("healthcheck" in svc, f"{name}: healthcheck")
env = {n: svc.get("environment", {}) for n, svc in s.items()}
for var in ["KMS_MASTER_KEY", "KMS_ADMIN_TOKEN", "KMS_GATEWAY_TOKEN"]:
    need(var in env["kms-sidecar"], f"kms-sidecar: {var}")
for var in ["KMS_GATEWAY_TOKEN", "GATEWAY_ADMIN_TOKEN"]:
    need(var in env["gateway"], f"gateway: {var}")
need("KMS_ADMIN_TOKEN" not in env["gateway"] and "KMS_MASTER_KEY" not in env["gateway"], "gateway must not get sidecar admin secrets")
need(not env["upstreams"] or not any(k.startswith(("KMS_", "GATEWAY_")) for k in env["upstreams"]), "upstreams must get no secrets")
# Every secret a config reads from the environment is given to its service.
for svc, conf in [("kms-sidecar", kms), ("gateway", gw)]:
    for var in re.findall(r"(?:env|token_env): (\w+)", yaml.safe_dump(conf)):
        need(var in env[svc], f"{svc}: its config reads {var}, compose does not set it")
need(s["kms-sidecar"]["command"] == ["kms-entrypoint"], "kms-sidecar: command kms-entrypoint")
need(s["gateway"]["command"][-1] == "/app/conf/docker/gateway.yaml", "gateway: conf/docker/gateway.yaml")
need(env["kms-sidecar"].get("KMS_CONFIG") == "/app/conf/docker/kms.yaml", "kms-sidecar: KMS_CONFIG")
# Listeners on every interface; peers at the upstreams service's fixed address.
need(gw["listen"].startswith("0.0.0.0:") and gw["admin_listen"].startswith("0.0.0.0:"), "gateway listens on 0.0.0.0")
need(kms["listen"].startswith("0.0.0.0:") and kms["internal_listen"].startswith("0.0.0.0:"), "sidecar listens on 0.0.0.0")
up_ip = s["upstreams"]["networks"]["medgate"]["ipv4_address"]
up_ports = {v.rsplit(":", 1)[1] for k, v in env["upstreams"].items() if k.startswith("UPSTREAMS_")}
for name, u in gw["upstreams"].items():
    for p in u["peers"]:
        ip, port = p.rsplit(":", 1)
        need(ip == up_ip and port in up_ports, f"gateway upstreams.{name}: {p} is not the upstreams service")
for url in [gw["keys"]["url_template"], gw["decryption"]["url_template"], gw["replay_store"]["url"], gw["revocation"]["feed_url"]]:
    need(url.startswith("http://kms-sidecar:"), f"gateway: {url} does not name the kms-sidecar service")
need(gw["decryption"]["url_template"].startswith("http://kms-sidecar:" + kms["internal_listen"].rsplit(":", 1)[1] + "/"), "decryption: internal port")
need(gw["keys"]["url_template"].startswith("http://kms-sidecar:" + kms["listen"].rsplit(":", 1)[1] + "/"), "keys: public port")
# Writable paths are the volumes.
mounts = {n: [v.split(":")[1] for v in svc.get("volumes", [])] for n, svc in s.items()}
need(kms["data_dir"] in mounts["kms-sidecar"], f"kms-sidecar: data_dir {kms['data_dir']} is not a volume")
for f in [gw["audit"]["file"], gw["audit"]["anonymous"]["file"]]:
    need(any(f.startswith(m + "/") for m in mounts["gateway"]), f"gateway: {f} is not on a volume")
# Never published: the gateway channel and the role services.
published = [p for svc in s.values() for p in svc.get("ports", [])]
need(not any(re.search(r":(8082|910[1-4])$", str(p)) for p in published), f"8082/9101-9104 published: {published}")
if errs:
    sys.exit("compose.yaml / conf/docker: " + "; ".join(errs))
print("compose.yaml and conf/docker/*.yaml: consistent")
PY
if [ -x target/debug/gateway ]; then target/debug/gateway --config conf/docker/gateway.yaml --check; fi
