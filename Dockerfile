# syntax=docker/dockerfile:1
#
# scopegate container image. Two targets from one build (docs/deployment.md has the commands,
# also for podman/buildah):
#
#   docker build -t scopegate .                          # default target `runtime`: node dist/cli.js
#   docker build --target bun -t scopegate:0.1.0-bun .  # the Bun door: bun dist/cli.js (SPEC §8)
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/gateway.yaml:/etc/scopegate/gateway.yaml:ro" \
#     -e SCOPEGATE_HS_SECRET=... --read-only --cap-drop ALL --security-opt no-new-privileges \
#     scopegate
#
# Base: node:24-bookworm-slim. Node 24 is the current Active LTS line; Debian bookworm (glibc) is
# the same userland the project's CI and developer machines run, so what is tested is what ships
# (no musl differences in DNS resolution or TLS). The slim variant has no curl/wget; the
# HEALTHCHECK uses node itself. Override with --build-arg NODE_IMAGE=... (e.g. node:24-alpine).
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: dev dependencies + TypeScript compile. Same commands as .ci/run. ---------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- deps: production dependencies only (no TypeScript, vitest, eslint, k6 types). ---------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts

# --- app: what both runtimes share ----------------------------------------------------------------
FROM ${NODE_IMAGE} AS app
ENV NODE_ENV=production \
    SCOPEGATE_CONFIG=/etc/scopegate/gateway.yaml
WORKDIR /app
# Everything is owned by root and only readable by the runtime user: the process cannot modify its
# own code, and nothing needs to be written at run time (read-only root FS friendly; logs go to
# stdout). Mount the config at /etc/scopegate/gateway.yaml.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# Numeric UID:GID (the image's "node" user) so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080 9090

# --- bun: `docker build --target bun` (chart: runtime: bun) ---------------------------------------
# The Bun binary is the devDependency `bun` from the build stage (the npm package's postinstall put
# the platform's binary at node_modules/bun/bin/bun.exe): the lockfile's version, the one CI tests
# the Bun door with, and no registry but npm. Node stays in the image (it is the base), unused.
FROM app AS bun
# No transpiler cache on disk: the root FS is read-only and the sources are plain JS already.
ENV BUN_RUNTIME_TRANSPILER_CACHE_PATH=0
COPY --from=build /app/node_modules/bun/bin/bun.exe /usr/local/bin/bun
# Fails the build here, not at run time, if the binary does not run on this base image's libc.
RUN ["bun", "--version"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bun", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["bun","dist/cli.js"]
CMD ["serve","--config","/etc/scopegate/gateway.yaml"]

# --- runtime: the default target (last stage), Node --------------------------------------------------
FROM app AS runtime
# Assumes the admin listener on its default port 9090 (admin.port in the config).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node","dist/cli.js"]
CMD ["serve","--config","/etc/scopegate/gateway.yaml"]
