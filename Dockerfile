# tollgate: gate + observer + API in one process. One role per container: override the command,
# e.g. `node dist/cli.js gate` (set METRICS_PORT so the health check has a port to ask).
# Three stages: the build compiles dist/ with the dev dependencies (tsc), the production dependencies
# are installed apart, and the runtime image gets only those, dist/ and the migrations.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.ts ./scripts/build.ts
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# Owned by root, run as node: the process cannot rewrite its own code.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tollgate.config.json ./
COPY drizzle ./drizzle
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080
# Liveness: /healthz on the API port (PORT) or a standalone gate's or observer's METRICS_PORT, whichever
# answers; node's own fetch, so the slim image needs no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "Promise.any([process.env.PORT||8080,process.env.METRICS_PORT].filter(Boolean).map(p=>fetch('http://127.0.0.1:'+p+'/healthz',{signal:AbortSignal.timeout(3000)}).then(r=>{if(!r.ok)throw new Error(r.status)}))).then(()=>process.exit(0),()=>process.exit(1))"]
# Signals reach node directly (no npm wrapper), so SIGTERM shuts down gracefully.
CMD ["node", "dist/cli.js", "gate", "observer", "api"]
