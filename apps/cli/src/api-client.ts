import { bytesToFloat32, sha256Hex } from '@confide/protocol';
import { Agent, type Dispatcher } from 'undici';

/** An error answered by the aggregator's REST API, with its code and message. */
export class ApiRequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiRequestError';
  }
}

/** A thin client of the aggregator's REST API (`/api/v1`), used by the CLI, the demo and the tests. */
export class ApiClient {
  readonly base: string;
  /** Set when `ca` is given: global fetch takes no CA itself, only a dispatcher that has one. */
  private readonly dispatcher: Dispatcher | undefined;

  /** `options.ca`: a PEM bundle to trust instead of Node's default roots (`--ca FILE`). */
  constructor(
    server: string,
    private readonly token: string,
    options?: { ca?: string },
  ) {
    let u: URL;
    try {
      u = new URL(server);
    } catch {
      throw new Error(`--server must be a URL such as http://localhost:8080; got "${server}"`);
    }
    if (u.protocol === 'ws:') u.protocol = 'http:';
    if (u.protocol === 'wss:') u.protocol = 'https:';
    this.base = `${u.protocol}//${u.host}`;
    this.dispatcher = options?.ca ? new Agent({ connect: { ca: options.ca } }) : undefined;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        ...this.via(),
      });
    } catch (e) {
      throw this.unreachable(e);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    if (!res.ok) {
      const err = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ApiRequestError(
        res.status,
        err?.code ?? `HTTP_${res.status}`,
        `${method} ${path}: ${err?.message ?? (text || res.statusText)}`,
      );
    }
    return parsed as T;
  }

  /** The fetch option that routes a request through the `ca` dispatcher; `dispatcher` is Node's. */
  private via(): RequestInit {
    return this.dispatcher ? ({ dispatcher: this.dispatcher } as RequestInit) : {};
  }

  /** fetch() says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, bad port...) is its cause. */
  private unreachable(e: unknown): ApiRequestError {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const cause = err.cause?.code ?? err.cause?.message;
    return new ApiRequestError(
      0,
      'UNREACHABLE',
      `cannot reach the aggregator at ${this.base}: ${err.message}${cause ? ` (${cause})` : ''}`,
    );
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  /** Downloads a model version's weights and checks them against the X-Model-Hash header. */
  async modelWeights(
    federationId: string,
    version = 'current',
  ): Promise<{ weights: Float32Array; hash: string; versionId: string }> {
    let res: Response;
    try {
      res = await fetch(
        `${this.base}/api/v1/federations/${federationId}/models/${version}/weights`,
        { headers: { authorization: `Bearer ${this.token}` }, ...this.via() },
      );
    } catch (e) {
      throw this.unreachable(e);
    }
    if (!res.ok) {
      const body = (await res.json().catch(() => ({}))) as {
        error?: { code?: string; message?: string };
      };
      throw new ApiRequestError(
        res.status,
        body.error?.code ?? `HTTP_${res.status}`,
        body.error?.message ?? res.statusText,
      );
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    const hash = res.headers.get('x-model-hash') ?? '';
    if (sha256Hex(bytes) !== hash)
      throw new Error('downloaded weights do not match the model hash');
    return {
      weights: bytesToFloat32(bytes),
      hash,
      versionId: res.headers.get('x-model-version') ?? version,
    };
  }
}
