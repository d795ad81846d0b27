#!/usr/bin/env bash
# Smoke test of the deployment shape without Docker: two `switchyard serve` processes with
# `instances = "shared"` on a fresh PostgreSQL database and the local Redis, a mock upstream, and
# nginx with deploy/nginx.conf's proxy settings in front. It streams one slow answer through nginx and
# checks that events arrive one by one (not buffered until the end), that both instances serve, and
# that a key revoked on one instance is refused through nginx within a second.
# Needs: nginx, psql, a built workspace (cargo build), PostgreSQL on 127.0.0.1:5432 and Redis on 6379.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/target/debug"
work="$(mktemp -d)"
db="smoke_$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

psql -h 127.0.0.1 -U postgres -d postgres -qc "create database $db" >/dev/null
pg="postgres://postgres@127.0.0.1:5432/$db"
mock_port=$(free_port)
"$bin/mock-upstream" --listen "127.0.0.1:$mock_port" >/dev/null 2>&1 & pids+=($!)
ports=()
for n in 1 2; do
  port=$(free_port); ports+=("$port")
  cat > "$work/sy$n.toml" <<TOML
database = "$pg"
redis = "redis://127.0.0.1:6379"
instances = "shared"
admin_key = "smoke-admin-key-0123456789"
journal = "$work/sy$n.journal"
demo_credits = "10"
[server]
max_connections_per_ip = 0
[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:$mock_port/v1"
[models.slow]
routes = ["mock/m@tokens=5,gap_ms=300"]
free = true
TOML
  "$bin/switchyard" serve --config "$work/sy$n.toml" --listen "127.0.0.1:$port" > "$work/sy$n.out" 2>&1 & pids+=($!)
  for _ in $(seq 1 100); do grep -q "listening on" "$work/sy$n.out" && break; sleep 0.1; done
done
key=$(grep -h '^sk-sy-' "$work"/sy*.out | head -n1)
[ -n "$key" ] || { echo "no first key printed"; cat "$work"/sy*.out; exit 1; }

nginx_port=$(free_port)
# deploy/nginx.conf's public locations, with local paths and ports.
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  upstream switchyard { server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; keepalive 16; }
  server {
    listen 127.0.0.1:$nginx_port;
$(sed -n '/location \/admin/,/^        }/p' "$root/deploy/nginx.conf")
  }
}
NGINX
nginx -c "$work/nginx.conf"
base="http://127.0.0.1:$nginx_port/v1"

echo "==> a slow stream through nginx arrives event by event"
python3 - "$base" "$key" <<'PY'
import json, sys, time, urllib.request
base, key = sys.argv[1], sys.argv[2]
req = urllib.request.Request(base + "/chat/completions", method="POST",
    data=json.dumps({"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode(),
    headers={"authorization": "Bearer " + key, "content-type": "application/json"})
t0, seen = time.monotonic(), []
with urllib.request.urlopen(req) as r:
    for line in r:
        if line.startswith(b"data: ") and b"[DONE]" not in line:
            seen.append(time.monotonic() - t0)
spread = seen[-1] - seen[0]
print(f"   {len(seen)} events, first at {seen[0]:.2f} s, last at {seen[-1]:.2f} s")
assert len(seen) >= 5 and spread > 0.8, "events were buffered until the end"
PY

echo "==> the admin API and the metrics are not on nginx's public port"
for path in /admin/keys /metrics; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer smoke-admin-key-0123456789" "http://127.0.0.1:$nginx_port$path")
  [ "$code" = 404 ] || { echo "$path through nginx answered $code"; exit 1; }
done

echo "==> both instances serve"
for port in "${ports[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $key" "http://127.0.0.1:$port/v1/models")
  [ "$code" = 200 ] || { echo "instance on $port answered $code"; exit 1; }
done

echo "==> a key revoked on instance 1 is refused through nginx within a second"
new=$(curl -s -X POST "http://127.0.0.1:${ports[0]}/admin/keys" -H "authorization: Bearer smoke-admin-key-0123456789" \
  -H 'content-type: application/json' -d '{"name":"smoke","credits":"1"}')
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$new")
secret=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$new")
curl -s -o /dev/null -X DELETE "http://127.0.0.1:${ports[0]}/admin/keys/$id" -H "authorization: Bearer smoke-admin-key-0123456789"
start=$(date +%s%N)
while :; do
  a=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $secret" "http://127.0.0.1:${ports[1]}/v1/models")
  [ "$a" = 401 ] && break
  [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 1000 ] || { echo "instance 2 still accepts the revoked key"; exit 1; }
  sleep 0.02
done
echo "   refused by instance 2 after $(( ($(date +%s%N) - start) / 1000000 )) ms"
echo "==> ok"
