# syntax=docker/dockerfile:1
#
# scopegate container image.
#
#   docker build -t scopegate .
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

# --- runtime --------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
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
# Assumes the admin listener on its default port 9090 (admin.port in the config).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node","dist/cli.js"]
CMD ["serve","--config","/etc/scopegate/gateway.yaml"]
