#!/usr/bin/env bash
# Two gateway configurations measured in the SAME window: both on the proxy core at once, each
# loaded by its own wrk (half the rig's connections each) on the load core, so hypervisor steal,
# frequency changes and other tenants hit both alike. On this VM two rig runs of one build differ
# by up to ±25 %; this A/B's own noise (A against A) is ±3 %.
#
# Each side is `bench/rig/token-service-denylist.sh` with its own environment (TOKEN_SERVICE,
# DENYLIST_ENTRIES, TOKEN_ID_CLAIM, NODE_OPTIONS, …): side A on $PORT_A, side B on $PORT_B with
# the rig config's admin port moved (two processes cannot share it). The CPU core splits evenly
# between the two (the script prints each side's CPU ticks to show it), so B/A of req/s is the
# ratio of their cost per request. Run both placements (A,B then B,A): the side started second is
# often ~2 % slower by itself; the geometric mean of the two placements cancels that.
#
#   cd /tmp/rig   # a copy of the shared rig with fixtures (bench/rig/README.md)
#   bash /path/to/scopegate/bench/rig/same-window.sh rs256 15 TOKEN_SERVICE=0 TOKEN_SERVICE=1
#   bash /path/to/scopegate/bench/rig/same-window.sh rs256 15 TOKEN_SERVICE=1 TOKEN_SERVICE=0
#
# INTERLEAVE=N instead loads one side at a time with all 2×CONNS connections, A and B alternating
# for N rounds of SECONDS each (the order flips every round). Neither shares the core with the
# other's load, as in a rig run where the gateway has the core alone, and alternating every few
# seconds still spreads the host's drift over both. Measured: sharing the core costs the pair ~20 %
# of its combined rate, and more to the side with the larger working set; the service-on against
# off ratio was 0.93-0.96 in shared windows and 0.97 interleaved, same build, same hour. Its own
# noise (A against A, 12 rounds of 4 s): 1.007.
#
#   INTERLEAVE=12 bash /path/to/scopegate/bench/rig/same-window.sh rs256 4 TOKEN_SERVICE=0 TOKEN_SERVICE=1
#
# Args: ALG (hs256|rs256), seconds, side A's env (space-separated K=V, quoted), side B's env.
# Env: PORT_A (18087), PORT_B (18088), LOAD_CPU (0), PROXY_CPU (1), CONNS (25 per side),
# SCOPEGATE_DIST (the build to run). Needs the rig's upstream on 127.0.0.1:18080 (started here
# with the rig's nginx template when nothing listens there) and wrk. Prints one line:
#   <alg> A[<env>]=<req/s> B[<env>]=<req/s> B/A=<ratio> non2xx=<a>/<b> ticks=<a>/<b>
#   <alg> interleaved xN A[<env>]=<mean req/s> B[<env>]=<mean req/s> B/A=<summed ratio> rounds=[<each>] non2xx=<a>/<b>
set -uo pipefail
[ $# -eq 4 ] || { echo "usage: same-window.sh ALG SECONDS 'A_ENV' 'B_ENV'" >&2; exit 2; }
ALG=$1 DUR=$2 ENV_A=$3 ENV_B=$4
[[ $ALG =~ ^(hs256|rs256)$ ]] || { echo "same-window: ALG must be hs256 or rs256, got '$ALG'" >&2; exit 2; }
[[ $DUR =~ ^[1-9][0-9]*$ ]] || { echo "same-window: SECONDS must be a positive integer, got '$DUR'" >&2; exit 2; }
[ -f "fixtures/tokens-$ALG.txt" ] && [ -f lua/tokens.lua ] || { echo "same-window: run it in the rig's bench/ directory (fixtures/, lua/ missing)" >&2; exit 2; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT_A=${PORT_A:-18087} PORT_B=${PORT_B:-18088} LOAD_CPU=${LOAD_CPU:-0} PROXY_CPU=${PROXY_CPU:-1} CONNS=${CONNS:-25}
TMP="$(mktemp -d)"
pids=()
upstream_pid=
cleanup() {
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
  [ -n "$upstream_pid" ] && kill "$upstream_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 18080; then
  mkdir -p "$TMP/nginx-tmp"
  sed -e "s#@RUN@#$TMP#g" -e "s#@PORT@#18080#g" conf/upstream-nginx.conf.in >"$TMP/up.conf"
  taskset -c "$LOAD_CPU" nginx -c "$TMP/up.conf" -p "$TMP" -e "$TMP/up.err" >/dev/null 2>&1 &
  upstream_pid=$!
  for _ in $(seq 50); do port_open 18080 && break; sleep 0.1; done
fi
export JWT_PUBLIC_KEY_FILE=$PWD/fixtures/rs256.pub.pem JWT_SECRET_FILE=$PWD/fixtures/hs256.secret JWKS_FILE=$PWD/fixtures/jwks.json \
  JWT_ISSUER=bench JWT_AUDIENCE=api ROUTES_FILE=$PWD/routes.json HOST=127.0.0.1 UPSTREAM_URL=http://127.0.0.1:18080 BENCH_ALG=$ALG
sed 's/port: 18097/port: 18098/' "scopegate-$ALG.yaml" >"$TMP/config-b.yaml"
# shellcheck disable=SC2086 # the side's env is a word list on purpose
env $ENV_A PORT=$PORT_A setsid taskset -c "$PROXY_CPU" bash "$HERE/token-service-denylist.sh" >"$TMP/a.out" 2>&1 &
pids+=($!)
# shellcheck disable=SC2086
env $ENV_B PORT=$PORT_B RIG_CONFIG="$TMP/config-b.yaml" setsid taskset -c "$PROXY_CPU" bash "$HERE/token-service-denylist.sh" >"$TMP/b.out" 2>&1 &
pids+=($!)
for p in $PORT_A $PORT_B; do
  for _ in $(seq 900); do port_open "$p" && break; sleep 0.1; done
  port_open "$p" || { echo "same-window: nothing listens on $p after 90 s" >&2; tail -n 5 "$TMP/a.out" "$TMP/b.out" >&2; exit 1; }
done
# The gateway process (node … serve) behind each side's script, by the PORT in its environment.
serve_pid() { for x in $(pgrep -f "cli.js serve"); do tr '\0' '\n' <"/proc/$x/environ" 2>/dev/null | grep -qx "PORT=$1" && { echo "$x"; return; }; done; }
ga=$(serve_pid "$PORT_A") gb=$(serve_pid "$PORT_B")
[ -n "$ga" ] && [ -n "$gb" ] || { echo "same-window: no gateway process found for port ${ga:+$PORT_B}${ga:-$PORT_A}" >&2; exit 1; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
non2xx() { awk '/Non-2xx/ {print $NF}' "$1" | grep . || echo 0; }
alive() {
  for side in "A $ga" "B $gb"; do
    set -- $side
    [ -e "/proc/$2" ] || { echo "same-window: side $1's gateway (pid $2) exited during the window; its output:" >&2; tail -n 5 "$TMP/$(tr AB ab <<<"$1").out" >&2; exit 1; }
  done
}
if [ "${INTERLEAVE:-0}" -gt 0 ]; then
  # The INTERLEAVE mode of the header: one side loaded at a time, with a warm-up of each first.
  W=(wrk -t1 -c"$((CONNS * 2))" -s lua/tokens.lua)
  for port in "$PORT_A" "$PORT_B"; do taskset -c "$LOAD_CPU" "${W[@]}" -d3s "http://127.0.0.1:$port/v2/room/42" -- "fixtures/tokens-$ALG.txt" >/dev/null; done
  sa=0 sb=0 rounds="" na=0 nb=0
  for r in $(seq "$INTERLEAVE"); do
    # Alternate which side goes first, so neither always follows the other.
    if [ $((r % 2)) -eq 1 ]; then order="a b"; else order="b a"; fi
    for s in $order; do
      port=$PORT_A; [ "$s" = b ] && port=$PORT_B
      taskset -c "$LOAD_CPU" "${W[@]}" -d"${DUR}s" "http://127.0.0.1:$port/v2/room/42" -- "fixtures/tokens-$ALG.txt" >"$TMP/$s.wrk"
    done
    alive
    ra=$(rps "$TMP/a.wrk") rb=$(rps "$TMP/b.wrk")
    na=$((na + $(non2xx "$TMP/a.wrk"))) nb=$((nb + $(non2xx "$TMP/b.wrk")))
    sa=$(awk -v x="$sa" -v y="$ra" 'BEGIN {print x + y}') sb=$(awk -v x="$sb" -v y="$rb" 'BEGIN {print x + y}')
    rounds="$rounds $(awk -v a="$ra" -v b="$rb" 'BEGIN {printf "%.3f", b / a}')"
  done
  echo "$ALG interleaved x$INTERLEAVE A[$ENV_A]=$(awk -v x="$sa" -v n="$INTERLEAVE" 'BEGIN {printf "%.0f", x / n}') B[$ENV_B]=$(awk -v x="$sb" -v n="$INTERLEAVE" 'BEGIN {printf "%.0f", x / n}') B/A=$(awk -v a="$sa" -v b="$sb" 'BEGIN {printf "%.3f", b / a}') rounds=[${rounds# }] non2xx=$na/$nb"
  exit 0
fi
W=(wrk -t1 -c"$CONNS" -s lua/tokens.lua)
taskset -c "$LOAD_CPU" "${W[@]}" -d3s "http://127.0.0.1:$PORT_A/v2/room/42" -- "fixtures/tokens-$ALG.txt" >/dev/null &
taskset -c "$LOAD_CPU" "${W[@]}" -d3s "http://127.0.0.1:$PORT_B/v2/room/42" -- "fixtures/tokens-$ALG.txt" >/dev/null
wait %%  2>/dev/null; sleep 1
ta0=$(ticks "$ga") tb0=$(ticks "$gb")
taskset -c "$LOAD_CPU" "${W[@]}" -d"${DUR}s" "http://127.0.0.1:$PORT_A/v2/room/42" -- "fixtures/tokens-$ALG.txt" >"$TMP/a.wrk" &
wa=$!
taskset -c "$LOAD_CPU" "${W[@]}" -d"${DUR}s" "http://127.0.0.1:$PORT_B/v2/room/42" -- "fixtures/tokens-$ALG.txt" >"$TMP/b.wrk"
wait "$wa"
alive
ta=$(( $(ticks "$ga") - ta0 )) tb=$(( $(ticks "$gb") - tb0 ))
ra=$(rps "$TMP/a.wrk") rb=$(rps "$TMP/b.wrk")
echo "$ALG A[$ENV_A]=$ra B[$ENV_B]=$rb B/A=$(awk -v a="$ra" -v b="$rb" 'BEGIN {printf "%.3f", b / a}') non2xx=$(non2xx "$TMP/a.wrk")/$(non2xx "$TMP/b.wrk") ticks=$ta/$tb"
