/** The dashboard's only way to the server: the REST API with the token as a bearer token. */

/** An error answered by the API, carrying the server's code and message verbatim. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** True when the server has no such endpoint (as opposed to "no such federation"). */
export function isMissingRoute(e: unknown): boolean {
  return e instanceof ApiError && e.status === 404 && /^Cannot (GET|POST)\b/.test(e.message);
}

export class Api {
  constructor(
    readonly token: string,
    private readonly onUnauthenticated: (message: string) => void = () => undefined,
  ) {}

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    accept = 'application/json',
  ): Promise<T> {
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'UNREACHABLE', `cannot reach the aggregator: ${(e as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      let code = `HTTP_${res.status}`;
      let message = text || res.statusText;
      try {
        const err = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
        if (err?.message) message = err.message;
        if (err?.code) code = err.code;
      } catch {
        /* not JSON */
      }
      if (res.status === 401) this.onUnauthenticated(message);
      throw new ApiError(res.status, code, message);
    }
    if (accept !== 'application/json') return text as T;
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  delete(path: string): Promise<void> {
    return this.request<void>('DELETE', path);
  }

  /** A non-JSON representation (e.g. `text/csv`) as text. */
  text(path: string, accept: string): Promise<string> {
    return this.request<string>('GET', path, undefined, accept);
  }
}

/** One strategy of the aggregator's registry, as `GET /api/v1/strategies` lists it. */
export interface StrategyInfo {
  name: string;
  summary: string;
  /** True for the robust rules that compare each site's update: not with secure aggregation. */
  needsIndividualUpdates: boolean;
  /** JSON Schema of its `strategyConfig` (an object schema; empty when unknown). */
  configSchema: Record<string, unknown>;
}

/** Which optional federation settings this aggregator accepts, and its strategies. */
export interface Capabilities {
  dp: boolean;
  secureAggregation: boolean;
  strategies: StrategyInfo[];
}

/** A strategy known only by its name (an aggregator without the strategies endpoint). */
export function namedStrategy(name: string): StrategyInfo {
  return {
    name,
    summary: '',
    needsIndividualUpdates: false,
    configSchema: { type: 'object', properties: {} },
  };
}

/**
 * Reads the create-federation schema from `/api/docs/json` (unknown means "not offered") and the
 * strategies from `GET /api/v1/strategies`, falling back to the schema's strategy names.
 */
export async function loadCapabilities(api: Api): Promise<Capabilities> {
  let caps: Capabilities = {
    dp: false,
    secureAggregation: false,
    strategies: [namedStrategy('fedavg')],
  };
  try {
    const res = await fetch('/api/docs/json');
    if (res.ok) caps = capabilitiesFromOpenApi(await res.json());
  } catch {
    /* keep the fallback */
  }
  try {
    const listed = strategiesFromApi(await api.get<unknown>('/api/v1/strategies'));
    if (listed) caps = { ...caps, strategies: listed };
  } catch (e) {
    if (!isMissingRoute(e)) throw e;
  }
  return caps;
}

/** Pure part of {@link loadCapabilities}. */
export function capabilitiesFromOpenApi(doc: unknown): Capabilities {
  const props = (
    doc as null | {
      paths?: Record<
        string,
        {
          post?: {
            requestBody?: {
              content?: Record<string, { schema?: { properties?: Record<string, unknown> } }>;
            };
          };
        }
      >;
    }
  )?.paths?.['/api/v1/federations']?.post?.requestBody?.content?.['application/json']?.schema
    ?.properties;
  const strategy = props?.['strategy'] as { enum?: unknown } | undefined;
  const names =
    Array.isArray(strategy?.enum) && strategy.enum.every((x) => typeof x === 'string')
      ? strategy.enum
      : ['fedavg'];
  return {
    dp: Boolean(props && 'dp' in props),
    secureAggregation: Boolean(props && 'secureAggregation' in props),
    strategies: names.map(namedStrategy),
  };
}

const MAX_STRATEGIES = 200;

/** The strategies endpoint's answer, checked entry by entry; null when it is not a list of them. */
export function strategiesFromApi(json: unknown): StrategyInfo[] | null {
  if (!Array.isArray(json) || json.length === 0 || json.length > MAX_STRATEGIES) return null;
  const out: StrategyInfo[] = [];
  for (const item of json as unknown[]) {
    const e = item as Partial<Record<keyof StrategyInfo, unknown>> | null;
    if (
      typeof e !== 'object' ||
      e === null ||
      typeof e.name !== 'string' ||
      !/^[a-z][a-z0-9-]{0,39}$/.test(e.name) ||
      typeof e.summary !== 'string' ||
      typeof e.needsIndividualUpdates !== 'boolean' ||
      typeof e.configSchema !== 'object' ||
      e.configSchema === null ||
      Array.isArray(e.configSchema)
    ) {
      return null;
    }
    out.push({
      name: e.name,
      summary: e.summary.slice(0, 500),
      needsIndividualUpdates: e.needsIndividualUpdates,
      configSchema: e.configSchema as Record<string, unknown>,
    });
  }
  return out;
}
