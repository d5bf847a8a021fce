import nacl from 'tweetnacl';
import type { CryptoBackend } from './backend';
import { SecAggClient } from './client';
import type { SecAggParams } from './params';
import { SecAggServer } from './server';

/** Options of simulateRound. */
export interface SimulatedRound {
  params: SecAggParams;
  /** One quantized input per site; the sites are named site-00, site-01, ... */
  inputs: readonly Uint32Array[];
  /** Sites (by index) that vanish before sending their shares. */
  dropBeforeSharing?: Iterable<number>;
  /** Sites that send shares but no masked input. */
  dropBeforeMasking?: Iterable<number>;
  /** Sites that send their masked input but do not answer the unmask request. */
  dropBeforeUnmasking?: Iterable<number>;
  /** Sites that do not advertise at all. */
  absent?: Iterable<number>;
  backend?: CryptoBackend;
  runId?: string;
  round?: number;
  modelHash?: string;
}

/** What simulateUntilFinish returns: the server is left in state 'unmasking' (or 'finished'). */
export interface SimulatedRoundState {
  /** The sum of the survivors' inputs mod 2^32, computed in the clear for comparison. */
  expected: Uint32Array;
  /** Indices of the sites whose inputs are in the sum. */
  survivors: number[];
  server: SecAggServer;
  clients: SecAggClient[];
}

/** What simulateRound returns. */
export interface SimulatedResult extends SimulatedRoundState {
  /** The unmasked sum the aggregator computed. */
  sum: Uint32Array;
}

/**
 * Runs a whole round in memory, clients and server exchanging messages directly, with sites dropping
 * out at any stage. For tests, demos and benchmarks; the aggregator does the same over WebSockets.
 *
 * @example
 * const { sum, expected } = simulateRound({ params, inputs, dropBeforeMasking: [2] });
 * // sum equals expected bit for bit
 */
export function simulateRound(options: SimulatedRound): SimulatedResult {
  const state = simulateUntilFinish(options);
  return { ...state, sum: state.server.finish() };
}

/**
 * simulateRound without the final step: every message exchanged, the server waiting in 'unmasking'
 * for finish() or finishParallel().
 *
 * @example
 * const { server, expected } = simulateUntilFinish({ params, inputs });
 * await server.finishParallel(pool); // equals expected
 */
export function simulateUntilFinish(options: SimulatedRound): SimulatedRoundState {
  const n = options.inputs.length;
  const vectorLength = options.inputs[0]?.length ?? 0;
  const names = Array.from({ length: n }, (_, i) => `site-${String(i).padStart(2, '0')}`);
  const identities = names.map(() => nacl.sign.keyPair());
  const roster = new Map(names.map((id, i) => [id, (identities[i] as nacl.SignKeyPair).publicKey]));
  const common = {
    roster,
    runId: options.runId ?? 'run-sim',
    round: options.round ?? 1,
    modelHash: options.modelHash ?? 'model-sim',
    params: options.params,
    vectorLength,
    ...(options.backend ? { backend: options.backend } : {}),
  };
  const absent = new Set(options.absent ?? []);
  const dropShare = new Set(options.dropBeforeSharing ?? []);
  const dropMask = new Set(options.dropBeforeMasking ?? []);
  const dropUnmask = new Set(options.dropBeforeUnmasking ?? []);
  const server = new SecAggServer(common);
  const clients = names.map(
    (siteId, i) =>
      new SecAggClient({
        ...common,
        siteId,
        identitySecretKey: (identities[i] as nacl.SignKeyPair).secretKey,
      }),
  );
  const live = (i: number): boolean => !absent.has(i);
  clients.forEach((c, i) => live(i) && server.addAdvertisement(c.advertise()));
  server.closeAdvertising();
  const sharing = clients.map((c, i) =>
    live(i) ? c.shareKeys(server.advertisementsFor(names[i] as string)) : undefined,
  );
  sharing.forEach((shares, i) => {
    if (shares && !dropShare.has(i)) server.addShares(names[i] as string, shares);
  });
  server.closeSharing();
  const inU2 = (i: number): boolean => live(i) && !dropShare.has(i);
  clients.forEach((c, i) => inU2(i) && c.receiveShares(server.sharesFor(names[i] as string)));
  const survivors: number[] = [];
  clients.forEach((c, i) => {
    if (!inU2(i) || dropMask.has(i)) return;
    server.addMaskedInput(names[i] as string, c.maskInput(options.inputs[i] as Uint32Array));
    survivors.push(i);
  });
  const consistency = server.closeCollection();
  if (consistency) {
    survivors.forEach((i) =>
      server.addSurvivorSignature(clients[i]?.confirmSurvivors(consistency)),
    );
    server.closeConsistency();
  }
  for (const i of survivors) {
    if (dropUnmask.has(i)) continue;
    const id = names[i] as string;
    server.addUnmaskResponse((clients[i] as SecAggClient).unmask(server.unmaskRequest(id)));
  }
  const expected = new Uint32Array(vectorLength);
  for (const i of survivors) {
    const x = options.inputs[i] as Uint32Array;
    for (let j = 0; j < vectorLength; j++) expected[j] = (expected[j] as number) + (x[j] as number);
  }
  return { expected, survivors, server, clients };
}
