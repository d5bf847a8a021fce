# syntax=docker/dockerfile:1
# One image for every role: `server` (the aggregator, default) and `node join` / `node keys` (a site).
FROM node:20-bookworm-slim

WORKDIR /app

# Full install, not --omit=dev: bin/confide.js runs the TypeScript through tsx at start-up.
# NODE_ENV is set only after this step, since NODE_ENV=production would make npm ci skip dev deps.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force

COPY . .

# /data: the aggregator's data dir (PGlite when DATABASE_URL is unset) or a site's read-only CSV.
# /keys: a site's key pair. Created here and owned by `node` so fresh named volumes inherit it.
RUN mkdir -p /data /keys && chown node:node /data /keys

ENV NODE_ENV=production \
    CONFIDE_PORT=8080

USER node

EXPOSE 8080

# Only meaningful for `server`; compose disables it for the site containers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=40s --retries=3 \
  CMD ["node", "-e", "const p = process.env.CONFIDE_PORT || 8080; const get = (s) => fetch(s + '://127.0.0.1:' + p + '/health'); get('https').catch(() => get('http')).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["node", "bin/confide.js"]
# --host 0.0.0.0: inside a container the aggregator must listen on the container's interface (the
# command's own default, 127.0.0.1, would be unreachable from outside it).
CMD ["server", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data"]
