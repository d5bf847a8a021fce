/**
 * The scale benchmark's --profile: a V8 CPU profile of the aggregator's process (it runs in the
 * benchmark's own process) over one round, written as a .cpuprofile (open it in Chrome DevTools or
 * speedscope), and a summary of where the time went in each of the round's phases.
 */
import { Session } from 'node:inspector';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
/** The parts of V8's Profiler.Profile this file reads. */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A profile being recorded; stop() ends it. */
export interface Recording {
  stop(): Promise<{ profile: CpuProfile; startedAt: number }>;
}

function post<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) =>
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T))),
  );
}

/** Starts V8's sampling profiler on this process's main thread. */
export async function startProfile(intervalUs = 500): Promise<Recording> {
  const session = new Session();
  session.connect();
  await post(session, 'Profiler.enable');
  await post(session, 'Profiler.setSamplingInterval', { interval: intervalUs });
  const startedAt = performance.timeOrigin + performance.now();
  await post(session, 'Profiler.start');
  return {
    async stop() {
      const { profile } = await post<{ profile: CpuProfile }>(session, 'Profiler.stop');
      session.disconnect();
      return { profile, startedAt };
    },
  };
}

/** Where a function lives, short: the path from the repository's folders on, or the package. */
function where(frame: CallFrame): string {
  const url = frame.url.replace(/^file:\/\//, '');
  const nm = url.lastIndexOf('/node_modules/');
  const short =
    nm >= 0
      ? url.slice(nm + '/node_modules/'.length)
      : url.replace(/^.*?\/(apps|libs|bench)\//, '$1/');
  return `${frame.functionName || '(anonymous)'} ${short}:${frame.lineNumber + 1}`;
}

/**
 * Self time per function in each phase (phases: [name, start, end] in epoch ms), the top `top` of
 * each, as text lines.
 */
export function summariseProfile(
  profile: CpuProfile,
  startedAt: number,
  phases: Array<[string, number, number]>,
  top = 12,
): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const own = (url: string): boolean =>
    /\/(apps|libs)\//.test(url) && !url.includes('/node_modules/');
  // The nearest of our own functions on the stack: what library or engine time is spent for.
  const ownerOf = (id: number): string => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const n = byId.get(at);
      if (n && own(n.callFrame.url)) return where(n.callFrame);
    }
    return '(no own frame)';
  };
  const perPhase = new Map<string, Map<string, number>>();
  const perOwner = new Map<string, Map<string, number>>();
  const totals = new Map<string, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    const at = startedAt + (t - profile.startTime) / 1000;
    const phase = phases.find(([, s, e]) => at >= s && at < e)?.[0] ?? '(outside the phases)';
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    const name = where(node.callFrame);
    if (name.startsWith('(idle)')) continue;
    const fns = perPhase.get(phase) ?? new Map<string, number>();
    perPhase.set(phase, fns);
    // A sample stands for the time until the next one.
    const ms = (profile.timeDeltas[i + 1] ?? dt) / 1000;
    fns.set(name, (fns.get(name) ?? 0) + ms);
    const owners = perOwner.get(phase) ?? new Map<string, number>();
    perOwner.set(phase, owners);
    const owner = ownerOf(node.id);
    owners.set(owner, (owners.get(owner) ?? 0) + ms);
    totals.set(phase, (totals.get(phase) ?? 0) + ms);
  }
  const lines: string[] = [];
  for (const [phase, fns] of perPhase) {
    lines.push(`${phase}: ${(totals.get(phase) ?? 0).toFixed(0)} ms on the main thread (not idle)`);
    for (const [name, ms] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      lines.push(`  ${ms.toFixed(0).padStart(7)} ms  ${name}`);
    }
    lines.push('  by nearest own function on the stack:');
    const owners = perOwner.get(phase) ?? new Map<string, number>();
    for (const [name, ms] of [...owners].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      lines.push(`  ${ms.toFixed(0).padStart(7)} ms  ${name}`);
    }
  }
  return lines;
}

/**
 * Writes the profile into `dir` as `<name>.cpuprofile`, and when it started and the round's phases
 * (epoch ms) as `<name>.phases.json`; returns the profile's path.
 */
export async function writeProfile(
  dir: string,
  name: string,
  profile: CpuProfile,
  startedAt: number,
  phases: Array<[string, number, number]>,
): Promise<string> {
  const path = join(dir, `${name}.cpuprofile`);
  await writeFile(path, JSON.stringify(profile));
  await writeFile(join(dir, `${name}.phases.json`), JSON.stringify({ startedAt, phases }));
  return path;
}
