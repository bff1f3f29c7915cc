#!/usr/bin/env bash
# The shared rig's GATEWAY_CMD for issue 14: scopegate (the Node door) exactly as the rig's plain
# `gateway` contestant — the rig's scopegate-$BENCH_ALG.yaml, `node dist/cli.js serve` — plus
# `token_service` on the embedded store, pre-seeded with DENYLIST_ENTRIES (100,000) live
# revocations, so every request the rig sends is checked against a denylist of that size.
#
#   cd /tmp/rig && GATEWAY_CMD='bash /path/to/scopegate/bench/rig/token-service-denylist.sh' ./run.sh gateway
#   … DENYLIST_ENTRIES=0 …    token service on, empty denylist
#   … TOKEN_SERVICE=0 …       no token service: the same config otherwise (the ratio's baseline)
#
# What differs from the plain rig gateway, and why:
#   - tokens.issuers gains the token service's own ES256 issuer (`rig-token-service`; its keys are
#     generated into the store); the rig's `bench` issuer still verifies the rig's tokens;
#   - the rig's tokens carry no `jti`, and scopegate asks the denylist only for a token that has a
#     token id, so by default the `bench` issuer reads its token id from `sub` (TOKEN_ID_CLAIM=sub):
#     every rig request then costs one denylist lookup of an id that is not in it (rig subs are
#     user-00000…; the seeded ids are rig-denylist-<i>). TOKEN_ID_CLAIM=jti measures the rig's
#     tokens as they are (no lookup at all). TOKEN_SERVICE=0 keeps the same mapping.
# Seeding (bench/rig/seed-denylist.mjs, the built store API) happens before the gateway starts, so
# it is never inside a measured window. A seeded store is kept in DENYLIST_CACHE
# (${TMPDIR:-/tmp}/scopegate-rig-denylist/<entries>-<schema>) and copied for each start: the first
# seeding of 100,000 takes ~15 s on the 2-vCPU VM, inside the rig's GATEWAY_STARTUP_S (30) budget
# but closer to it than a copy; `bash token-service-denylist.sh --seed-only` fills the cache up front.
# Once the gateway listens, a probe proves the denylist is loaded: tokens minted beforehand by
# `seed-denylist.mjs probe-tokens` whose id is seeded entry #0, #n/2 or #n-1 are refused 401
# token_revoked, and #n passes. scopegate exposes no denylist-size
# gauge or log line, so the count printed at start is the store's (what the denylist's first full
# sync reads), checked by the seeder, and the probe shows the gateway holds it. A failed probe stops
# the gateway, so the rig marks the row invalid instead of measuring without the denylist.
# All of this goes to the rig's gateway-<alg>.out in its run dir (the first lines).
#
# Env from the rig: PORT, UPSTREAM_URL, JWT_SECRET_FILE, JWKS_FILE, JWT_PUBLIC_KEY_FILE, BENCH_ALG
# (cwd: the rig's bench/). Optional: RIG_CONFIG, DENYLIST_ENTRIES, TOKEN_SERVICE, TOKEN_ID_CLAIM,
# DENYLIST_CACHE, SCOPEGATE_DIST.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$(dirname "$HERE")")"
DIST="${SCOPEGATE_DIST:-$ROOT/dist}"
export SCOPEGATE_DIST="$DIST"
say() { printf 'token-service-denylist: %s\n' "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

ENTRIES="${DENYLIST_ENTRIES:-100000}"
TOKEN_SERVICE="${TOKEN_SERVICE:-1}"
TOKEN_ID_CLAIM="${TOKEN_ID_CLAIM:-sub}"
[[ $ENTRIES =~ ^[0-9]+$ ]] || die "DENYLIST_ENTRIES must be a non-negative integer, got '$ENTRIES'"
[[ $TOKEN_SERVICE =~ ^[01]$ ]] || die "TOKEN_SERVICE must be 0 or 1, got '$TOKEN_SERVICE'"
[[ $TOKEN_ID_CLAIM =~ ^[A-Za-z_][A-Za-z0-9_.]*$ ]] || die "TOKEN_ID_CLAIM must be a claim name, got '$TOKEN_ID_CLAIM'"
[ -f "$DIST/cli.js" ] || die "$DIST/cli.js missing: run npm run build in $ROOT"
SCHEMA="$(sha256sum "$DIST/token-service/store/sql.js" 2>/dev/null | cut -c1-12)"
[ -n "$SCHEMA" ] || die "$DIST/token-service/store/sql.js missing: run npm run build in $ROOT"
CACHE_ROOT="${DENYLIST_CACHE:-${TMPDIR:-/tmp}/scopegate-rig-denylist}"
TEMPLATE="$CACHE_ROOT/$ENTRIES-$SCHEMA-v2"   # v2: revoked a day ago (seed-denylist.mjs)

# A seeded store for ENTRIES, made once (into a temp name, then renamed: two starts never share a
# half-seeded directory).
ensure_template() {
  [ -d "$TEMPLATE/pgdata" ] && { SEEDED="reused $TEMPLATE"; return 0; }
  mkdir -p "$CACHE_ROOT" || die "cannot create $CACHE_ROOT"
  local out
  SEEDING="$(mktemp -d "$CACHE_ROOT/.seeding-XXXXXX")" || die "mktemp failed"
  local tmp="$SEEDING"
  say "seeding $ENTRIES revocations into $TEMPLATE (once; --seed-only does it ahead of a run)"
  if ! out="$(node "$HERE/seed-denylist.mjs" seed "$tmp/store" "$ENTRIES")"; then rm -rf "$tmp"; die "seeding failed"; fi
  if mv -T "$tmp/store" "$TEMPLATE" 2>/dev/null; then SEEDED="seeded now $out"; else SEEDED="seeded concurrently, reused $TEMPLATE"; fi
  rm -rf "$tmp"
  SEEDING=""
}

SEEDING=""
if [ "${1:-}" = --seed-only ]; then
  trap '[ -n "$SEEDING" ] && rm -rf "$SEEDING"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  ensure_template
  say "$SEEDED"
  exit 0
fi

for v in PORT UPSTREAM_URL JWT_SECRET_FILE BENCH_ALG; do
  [ -n "${!v:-}" ] || die "$v is not set (this script is the shared rig's GATEWAY_CMD)"
done
RIG_CONFIG="${RIG_CONFIG:-$PWD/scopegate-$BENCH_ALG.yaml}"
[ -f "$RIG_CONFIG" ] || die "rig config $RIG_CONFIG not found (run from the rig's bench/ dir, or set RIG_CONFIG)"

DIR="$(mktemp -d "${TMPDIR:-/tmp}/scopegate-rig-ts-XXXXXX")" || die "mktemp failed"
SG=""
cleanup() {
  # Ignored, not reset: the rig signals the group and then this pid again; a second TERM must not
  # kill this shell before scopegate has closed its store and the temp dir is removed.
  trap '' TERM INT HUP
  trap - EXIT
  if [ -n "$SG" ]; then kill -TERM "$SG" 2>/dev/null; wait "$SG" 2>/dev/null; fi
  rm -rf "$DIR" ${SEEDING:+"$SEEDING"}
}
trap cleanup EXIT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 129' HUP

if [ "$TOKEN_SERVICE" = 1 ]; then
  ensure_template
  cp -a "$TEMPLATE" "$DIR/store" || die "copying $TEMPLATE failed"
  node "$HERE/render.mjs" scopegate "$RIG_CONFIG" "$DIR/scopegate.yaml" --token-service "$DIR/store" --token-id-claim "$TOKEN_ID_CLAIM" || die "rendering the config failed"
  WHAT="token service on (embedded store, $ENTRIES live revocations: $SEEDED)"
  PROBE_N="$ENTRIES"
else
  node "$HERE/render.mjs" scopegate "$RIG_CONFIG" "$DIR/scopegate.yaml" --token-id-claim "$TOKEN_ID_CLAIM" || die "rendering the config failed"
  WHAT="token service off"
  PROBE_N=0
fi

node "$HERE/seed-denylist.mjs" probe-tokens "$PROBE_N" >"$DIR/probe.txt" || die "minting the probe tokens failed"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open "$PORT" && die "port $PORT already in use"
started=$(date +%s%N)
BENCH_HS_SECRET="$(cat "$JWT_SECRET_FILE")" node "$DIST/cli.js" serve --config "$DIR/scopegate.yaml" &
SG=$!
until port_open "$PORT"; do
  kill -0 "$SG" 2>/dev/null || { wait "$SG"; status=$?; SG=""; die "scopegate exited ($status) before listening"; }
  sleep 0.05
done
say "$BENCH_ALG: $WHAT; claims.token_id: $TOKEN_ID_CLAIM; listening after $(( ($(date +%s%N) - started) / 1000000 )) ms (pid $SG);" \
  "$(taskset -cp $$ 2>/dev/null | sed 's/.*: /cpu affinity: /')"

# The probe: four requests, right after the port opens (alongside the rig's own curl checks).
probe=() fails=0
while read -r want i tok; do
  body="$(curl -s --max-time 10 -H "Authorization: Bearer $tok" -w ' %{http_code}' "http://127.0.0.1:$PORT/v2/room/42")"
  got="${body##* }"; body="${body% *}"
  reason="$(sed -n 's/.*"reason":"\([a-z_]*\)".*/\1/p' <<<"$body")"
  if [ "$got" = "$want" ] && { [ "$want" != 401 ] || [ "$reason" = token_revoked ]; }; then probe+=("#$i $got${reason:+ $reason}")
  else probe+=("#$i $got${reason:+ $reason} (want $want)"); fails=$((fails + 1)); fi
done <"$DIR/probe.txt"
if [ "$fails" -gt 0 ] || [ "${#probe[@]}" -eq 0 ]; then
  say "denylist probe FAILED: ${probe[*]}; stopping the gateway so the rig does not measure without the denylist" >&2
  exit 1
fi
say "denylist probe ok: ${probe[*]}"
if [ "$TOKEN_SERVICE" = 1 ] && [ "$ENTRIES" -gt 0 ]; then
  admin_port="$(awk '/^admin:/ { a = 1; next } a && /^  port:/ { print $2; exit } /^[^ ]/ { a = 0 }' "$DIR/scopegate.yaml")"
  if [[ $admin_port =~ ^[0-9]+$ ]]; then
    m="$(curl -s --max-time 2 "http://127.0.0.1:$admin_port/metrics" | grep -E '^scopegate_auth_failures_total\{reason="token_revoked"\}' || true)"
    [ -n "$m" ] && say "admin /metrics: $m (the probe's refusals; scopegate has no denylist-size gauge)"
  fi
fi

wait "$SG"
status=$?
SG=""
say "scopegate exited ($status)"
exit "$status"
