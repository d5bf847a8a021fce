import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Inject, Injectable } from '@nestjs/common';
import { CONFIG, type AggregatorConfig } from '../common/tokens';

/** The dashboard's sources (apps/dashboard/src), bundled by the aggregator itself: no build step. */
export const DASHBOARD_SRC = fileURLToPath(new URL('../../../dashboard/src/', import.meta.url));

/** The three files the dashboard is served as. */
export interface DashboardBundle {
  html: string;
  js: Buffer;
  css: Buffer;
  /** Short hash of the bundle, used as the assets' ETag and cache-busting query. */
  version: string;
}

/**
 * Bundles the dashboard with esbuild on the first request and keeps the result in memory (about 100 ms,
 * once). A failed build is not cached, so fixing the source and reloading is enough in development.
 */
@Injectable()
export class DashboardAssets {
  private bundle: Promise<DashboardBundle> | null = null;

  constructor(@Inject(CONFIG) private readonly config: AggregatorConfig) {}

  get(): Promise<DashboardBundle> {
    if (!this.bundle) {
      const started = Date.now();
      this.bundle = buildDashboard().then(
        (b) => {
          this.config.log(`dashboard bundled in ${Date.now() - started} ms`);
          return b;
        },
        (e: unknown) => {
          this.bundle = null;
          throw e;
        },
      );
    }
    return this.bundle;
  }
}

/** Bundles apps/dashboard/src/main.ts (and the CSS it imports) into memory. */
export async function buildDashboard(): Promise<DashboardBundle> {
  const esbuild = await import('esbuild');
  const production = process.env['NODE_ENV'] === 'production';
  const result = await esbuild.build({
    entryPoints: { app: `${DASHBOARD_SRC}main.ts` },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
    outdir: '/dashboard',
    minify: production,
    sourcemap: production ? false : 'inline',
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'silent',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'));
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'));
  if (!js || !css) throw new Error('the dashboard bundle has no app.js or app.css');
  const version = createHash('sha256')
    .update(js.contents)
    .update(css.contents)
    .digest('hex')
    .slice(0, 12);
  const template = await readFile(`${DASHBOARD_SRC}index.html`, 'utf8');
  return {
    html: template.replaceAll('%VERSION%', version),
    js: Buffer.from(js.contents),
    css: Buffer.from(css.contents),
    version,
  };
}
