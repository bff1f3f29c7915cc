#!/usr/bin/env bash
# The shared rig's GATEWAY_CMD for "nginx + scopegate forward auth" (issue 12): nginx on $PORT runs
# the shipped deploy/forward-auth/nginx.conf (auth_request to scopegate over an upstream keepalive
# block, proxy_pass to $UPSTREAM_URL with keepalive), and scopegate answers its sub-requests on a
# private port with the rig's own scopegate config plus `forward_auth: { path: /_scopegate/auth }`.
#
#   cd /tmp/rig && GATEWAY_CMD='bash /path/to/scopegate/bench/rig/forward-auth-nginx.sh' ./run.sh gateway
#
# The rig starts GATEWAY_CMD under `taskset -c $PROXY_CPU` in its own process group: nginx (master
# and its one worker) and scopegate inherit that pinning, so both share the proxy core, and the
# rig's group kill stops all three processes; on SIGTERM/SIGINT/SIGHUP of this script alone it
# stops both children itself, waits for them and removes its temp dir.
#
# Env from the rig: PORT, UPSTREAM_URL, JWT_SECRET_FILE, BENCH_ALG (cwd: the rig's bench/, where
# scopegate-$BENCH_ALG.yaml is). Optional: RIG_CONFIG (that file), NGINX_BIN (/usr/sbin/nginx),
# FA_AUTH_PORT (scopegate's port; default a free one), FA_KEEPALIVE (idle connections nginx keeps
# per upstream block, 128 as the rig's nginx-proxy; the shipped snippet says 32), SCOPEGATE_DIST.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$(dirname "$HERE")")"
DIST="${SCOPEGATE_DIST:-$ROOT/dist}"
say() { printf 'forward-auth-nginx: %s\n' "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

for v in PORT UPSTREAM_URL JWT_SECRET_FILE BENCH_ALG; do
  [ -n "${!v:-}" ] || die "$v is not set (this script is the shared rig's GATEWAY_CMD)"
done
NGINX_BIN="${NGINX_BIN:-$( [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx || command -v nginx )}"
[ -n "$NGINX_BIN" ] && [ -x "$NGINX_BIN" ] || die "nginx not found (apt-get install nginx-light, or set NGINX_BIN)"
"$NGINX_BIN" -V 2>&1 | grep -q http_auth_request_module || die "$NGINX_BIN has no auth_request module (Debian's nginx-light has it)"
[ -f "$DIST/cli.js" ] || die "$DIST/cli.js missing: run npm run build in $ROOT"
RIG_CONFIG="${RIG_CONFIG:-$PWD/scopegate-$BENCH_ALG.yaml}"
[ -f "$RIG_CONFIG" ] || die "rig config $RIG_CONFIG not found (run from the rig's bench/ dir, or set RIG_CONFIG)"
APP="${UPSTREAM_URL#http://}"; APP="${APP%/}"
[[ $APP =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "UPSTREAM_URL must be http://127.0.0.1:<port>, got $UPSTREAM_URL"

AUTH_PORT="${FA_AUTH_PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}"
[[ $AUTH_PORT =~ ^[0-9]+$ ]] || die "no port for scopegate ($AUTH_PORT)"
[ "$AUTH_PORT" != "$PORT" ] || die "FA_AUTH_PORT must differ from PORT"

DIR="$(mktemp -d "${TMPDIR:-/tmp}/scopegate-rig-fa-XXXXXX")" || die "mktemp failed"
chmod 755 "$DIR"   # nginx started as root runs its worker as nobody: it must reach the temp paths
PIDS=()
cleanup() {
  # Ignored, not reset: the rig signals the group and then this pid again, and a second TERM must
  # not kill this shell before its children are gone and the temp dir removed.
  trap '' TERM INT HUP
  trap - EXIT
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ -s "$DIR/error.log" ]; then say "nginx error log:"; tail -20 "$DIR/error.log"; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 129' HUP

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null; }
wait_port() { # PORT PID SECONDS
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    port_open "$1" && return 0
    alive "$2" || return 1
    sleep 0.05
  done
  return 1
}

node "$HERE/render.mjs" scopegate "$RIG_CONFIG" "$DIR/scopegate.yaml" --listen-port "$AUTH_PORT" --forward-auth /_scopegate/auth || die "rendering the scopegate config failed"
node "$HERE/render.mjs" nginx "$DIR" "$PORT" "127.0.0.1:$AUTH_PORT" "$APP" "${FA_KEEPALIVE:-128}" >/dev/null || die "rendering nginx.conf failed"
"$NGINX_BIN" -t -q -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log" || die "nginx -t refused $DIR/nginx.conf"

port_open "$AUTH_PORT" && die "port $AUTH_PORT (scopegate) already in use"
BENCH_HS_SECRET="$(cat "$JWT_SECRET_FILE")" node "$DIST/cli.js" serve --config "$DIR/scopegate.yaml" &
SG=$!
PIDS+=("$SG")
wait_port "$AUTH_PORT" "$SG" 25 || die "scopegate did not listen on 127.0.0.1:$AUTH_PORT"

# Only now nginx: the rig starts its checks as soon as $PORT accepts connections.
"$NGINX_BIN" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log" &
NG=$!
PIDS+=("$NG")
wait_port "$PORT" "$NG" 10 || die "nginx did not listen on 127.0.0.1:$PORT"

say "$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') on 127.0.0.1:$PORT (pid $NG, 1 worker, keepalive ${FA_KEEPALIVE:-128})" \
  "-> scopegate $BENCH_ALG forward auth on 127.0.0.1:$AUTH_PORT (pid $SG), app $APP;" \
  "$(taskset -cp $$ 2>/dev/null | sed 's/.*: /cpu affinity: /')"

# Either one ending ends the contestant (the rig then sees it die and marks the row invalid).
wait -n "$SG" "$NG"
status=$?
alive "$SG" || say "scopegate exited ($status)"
alive "$NG" || say "nginx exited ($status)"
exit "$status"
