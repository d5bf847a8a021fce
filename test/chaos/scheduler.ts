/**
 * The chaos plan: every scheduling decision (which fault, at which protocol stage, on which site,
 * how long a killed process stays down) drawn from one seeded PRNG before the run starts, so a seed
 * names the same plan every time. Timing still varies between runs; the plan does not.
 */
import type { Direction } from './proxy';

/** sfc32: a small, fast PRNG with a 128-bit state, seeded through splitmix32. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
}

/** A protocol stage: a message type going one way. */
export interface Stage {
  type: string;
  dir: Direction;
}

/**
 * The stages of a round with secure aggregation and DP, in the order they happen: login, training
 * (keys, shares, the ledger slot and receipt, the masked update, consistency, unmasking), then the
 * evaluation sum (its own keys and unmasking) and the round's end.
 */
export const STAGES: readonly Stage[] = [
  { type: 'login', dir: 'up' },
  { type: 'welcome', dir: 'down' },
  { type: 'round.train', dir: 'down' },
  { type: 'secagg.advertise', dir: 'up' },
  { type: 'secagg.advertisements', dir: 'down' },
  { type: 'secagg.shares', dir: 'up' },
  { type: 'secagg.deliver', dir: 'down' },
  { type: 'ledger.reserve', dir: 'up' },
  { type: 'ledger.slot', dir: 'down' },
  { type: 'round.update', dir: 'up' },
  { type: 'secagg.consistency', dir: 'down' },
  { type: 'secagg.signature', dir: 'up' },
  { type: 'secagg.unmask', dir: 'down' },
  { type: 'secagg.unmasked', dir: 'up' },
  { type: 'sum.open', dir: 'down' },
  { type: 'round.evaluate', dir: 'down' },
  { type: 'secagg.masked', dir: 'up' },
  { type: 'round.end', dir: 'down' },
];

/** Where an aggregator kill may land: each step of a round that leaves something half done. */
const KILL_STAGES: readonly Stage[] = STAGES.filter((s) =>
  [
    'round.train',
    'secagg.shares',
    'ledger.reserve',
    'ledger.slot',
    'round.update',
    'secagg.unmasked',
    'round.evaluate',
    'secagg.masked',
    'round.end',
  ].includes(s.type),
);

export type FaultKind = 'aggregatorKilled' | 'nodeKilled' | 'connectionCut';
export const FAULT_KINDS: readonly FaultKind[] = [
  'aggregatorKilled',
  'nodeKilled',
  'connectionCut',
];

/** One planned fault: it fires when its stage next crosses the proxy in its round. */
export interface Fault {
  kind: FaultKind;
  stage: Stage;
  /** A cut: drop the connection before the message gets through, or just after. */
  when: 'before' | 'after';
  /** The site whose connection or process it hits (an aggregator kill fires on any site's message). */
  site: number;
  /** How long a killed process stays down before it is restarted. */
  downMs: number;
}

/** The plan of one round (by the order rounds start in, from 0). */
export type RoundPlan = Fault[];

/**
 * Draws the plan for `rounds` rounds over `sites` sites: 0 to 3 faults a round (1.5 on average),
 * mostly cuts, a node kill in about one round in two, and the aggregator killed in one round of
 * five. Cuts walk through every stage in turn, so a run of
 * a few rounds already cuts each stage of the protocol in both directions of timing.
 */
export function planFaults(seed: number, rounds: number, sites: number): RoundPlan[] {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  let cutStage = Math.floor(rnd() * STAGES.length);
  const plans: RoundPlan[] = [];
  for (let r = 0; r < rounds; r++) {
    const n = Math.floor(rnd() * 4);
    const plan: RoundPlan = [];
    for (let i = 0; i < n; i++) {
      const kind: FaultKind = rnd() < 0.4 ? 'nodeKilled' : 'connectionCut';
      const stage =
        kind === 'connectionCut' ? STAGES[cutStage++ % STAGES.length]! : pick(STAGES.slice(2));
      plan.push({
        kind,
        stage,
        when: rnd() < 0.5 ? 'before' : 'after',
        site: Math.floor(rnd() * sites),
        downMs: Math.floor(rnd() * 8000),
      });
    }
    // The aggregator dies in one round of five (once: the round it hits may be over anyway).
    if (r % 5 === 2) {
      plan.push({
        kind: 'aggregatorKilled',
        stage: pick(KILL_STAGES),
        when: 'after',
        site: 0,
        downMs: Math.floor(rnd() * 3000),
      });
    }
    plans.push(plan);
  }
  return plans;
}

/** One line for a planned fault, for the progress log. */
export function describeFault(f: Fault, siteName: string): string {
  const at = `${f.when} ${f.stage.type} (${f.stage.dir === 'up' ? 'site -> aggregator' : 'aggregator -> site'})`;
  switch (f.kind) {
    case 'aggregatorKilled':
      return `kill -9 aggregator at ${f.stage.type}, restart after ${f.downMs} ms`;
    case 'nodeKilled':
      return `kill -9 ${siteName} at ${f.stage.type}, restart after ${f.downMs} ms`;
    case 'connectionCut':
      return `cut ${siteName}'s connection ${at}`;
  }
}
