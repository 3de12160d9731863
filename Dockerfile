# syntax=docker/dockerfile:1
# Multi-stage build of the FHIR HIE server. Runs on Node 22 as a non-root user.
# In containers, point DATABASE_URL at a real PostgreSQL; the embedded database is for laptops and tests.

FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig*.json nest-cli.json ./
COPY src ./src
COPY migrations ./migrations
# --omit=optional drops the embedded PostgreSQL binaries: containers use DATABASE_URL.
RUN npm run build && npm prune --omit=dev --omit=optional

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production \
    PORT=8080 \
    FHIR_BASE_PATH=/fhir \
    LOG_LEVEL=info
# DATABASE_URL (required in containers), PUBLIC_BASE_URL and the rest: see README "Configuration".
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY fhir-profiles ./fhir-profiles
COPY config ./config
USER node
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
# A young generation of 64 MiB semi-spaces: a request's objects die young instead of being copied
# through many small scavenges (docs/performance.md, "Ingest CPU, fifth step").
CMD ["node", "--max-semi-space-size=64", "dist/main.js"]
