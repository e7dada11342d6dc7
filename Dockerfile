# tollgate: gate + observer + API in one process (override CMD to run one role per container).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY tsconfig.json tollgate.config.json ./
COPY src ./src
COPY workers ./workers
COPY drizzle ./drizzle
USER node
EXPOSE 8080
# Signals reach node directly (no npm wrapper), so SIGTERM shuts down gracefully.
CMD ["node", "--import", "tsx", "workers/all.ts"]
