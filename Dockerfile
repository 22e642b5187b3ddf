# syntax=docker/dockerfile:1
# One image for all OrderFlow services. Pick the service with the command:
#   docker run orderflow dist/services/order/main.js
#   docker run orderflow dist/services/order/main.js migrate
#   docker run orderflow dist/tools/dlq.js --help      (dead letters)
# (the Helm chart sets the command per Deployment). Runs as the non-root
# "node" user (UID 1000) and writes nothing to disk, so a read-only root
# filesystem with an emptyDir on /tmp is enough.
#
# Every RUN step uses paths relative to WORKDIR: test/k8s/dockerfile.test.ts
# replays them in a clean directory (no Docker engine is needed for that); the
# one that installs a Debian package is checked, not replayed.
ARG NODE_IMAGE=node:24-slim

# ---- build: all dependencies, TypeScript -> dist/ ---------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY gen ./gen
COPY services ./services
# tools/: the dead-letter CLI (node dist/tools/dlq.js) ships in the image too.
COPY tools ./tools
RUN npm run build
# The runtime reads services/<name>/migrations/*.sql (found from package.json's
# directory); collect them with their layout.
RUN mkdir -p runtime && for d in services/*/migrations; do mkdir -p "runtime/$d" && cp -R "$d/." "runtime/$d/"; done

# ---- prod-deps: production node_modules only -------------------------------
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
COPY package.json package-lock.json ./
RUN npm ci --omit=dev

# ---- runtime ---------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# jemalloc instead of glibc's malloc: under sustained gRPC load glibc's heap
# fragments and keeps what it freed (the order service held about 300 MiB more;
# docs/performance-history.md, sixty-seventh pass). npm start does the same
# where the host has it (tools/allocator.ts).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2" /usr/local/lib/libjemalloc.so.2
ENV NODE_ENV=production LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/runtime/services ./services
USER node
EXPOSE 8080 9090
# The services' node flags (tools/node-flags.ts; the chart passes its
# common.nodeFlags, which default to the same).
ENTRYPOINT ["node", "--enable-source-maps", "--max-semi-space-size=64"]
CMD ["dist/services/order/main.js"]
