import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import { DashboardAssets } from './dashboard-assets.service';

/** Paths the dashboard never answers: the API, OpenAPI, health, metrics and the site socket. */
const RESERVED = /^\/(api|health|metrics|v1)(\/|$)/;

const PAGE_HEADERS: Record<string, string> = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

/** Serves the dashboard at `/`: index.html, app.js, app.css (bundled on first request). */
@ApiExcludeController()
@Controller()
export class DashboardController {
  constructor(@Inject(DashboardAssets) private readonly assets: DashboardAssets) {}

  @Get()
  async index(@Res() res: Response): Promise<void> {
    await sendIndex(this.assets, res);
  }

  @Get('app.js')
  async js(@Req() req: Request, @Res() res: Response): Promise<void> {
    const b = await this.assets.get();
    sendAsset(req, res, b.js, 'text/javascript; charset=utf-8', b.version);
  }

  @Get('app.css')
  async css(@Req() req: Request, @Res() res: Response): Promise<void> {
    const b = await this.assets.get();
    sendAsset(req, res, b.css, 'text/css; charset=utf-8', b.version);
  }
}

async function sendIndex(assets: DashboardAssets, res: Response): Promise<void> {
  const b = await assets.get();
  res.status(200);
  for (const [k, v] of Object.entries(PAGE_HEADERS)) res.setHeader(k, v);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache');
  res.end(b.html);
}

function sendAsset(req: Request, res: Response, body: Buffer, type: string, version: string) {
  const etag = `"${version}"`;
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (req.headers['if-none-match'] === etag) {
    res.status(304).end();
    return;
  }
  res.status(200);
  res.setHeader('Content-Type', type);
  res.end(body);
}

/**
 * Client-side routing: a browser navigating to any other non-API path without a file extension (a
 * bookmarked `/federations/...`) gets index.html. Installed as middleware so it does not depend on the
 * order in which controllers register their routes; API clients (no `Accept: text/html`) are untouched.
 */
export function dashboardFallback(assets: DashboardAssets) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (
      (req.method !== 'GET' && req.method !== 'HEAD') ||
      RESERVED.test(req.path) ||
      /\.[A-Za-z0-9]+$/.test(req.path) ||
      !(req.headers.accept ?? '').includes('text/html')
    ) {
      next();
      return;
    }
    sendIndex(assets, res).catch(next);
  };
}
