import { compareIds, fromBase64, toBase64 } from './bytes';
import { SecAggError } from './errors';
import { parseAdvertisement, type Advertisement, type ParsedAdvertisement } from './messages';

/**
 * What the aggregator sends one site after round 0 (SecAgg+, Bell et al. 2020: a site needs only its
 * neighbours' keys): which sites advertised, the Merkle root of all their advertisements, and the
 * site's own and its neighbours' advertisements, each with its membership proof. The site fixes the
 * session id and the graph from the first two, so it needs no other site's keys; its messages are
 * O(k log n), not O(n).
 */
export interface NeighbourhoodAdvertisements {
  /**
   * The sites that advertised: a bitmap over the round's roster in id order (bit i is bit i % 8 of
   * byte i >> 3), base64.
   */
  sites: string;
  /** Merkle root (32 bytes, base64) over every advertisement (advertisementLeaf) in id order. */
  root: string;
  /** The site's own advertisement and every neighbour's, each with its Merkle proof. */
  advertisements: ProvenAdvertisement[];
}

/** An advertisement with the sibling hashes (32 bytes each, concatenated, base64) up to the root. */
export interface ProvenAdvertisement extends Advertisement {
  proof: string;
}

/** A neighbourhood message after its shape is checked. */
export interface ParsedNeighbourhood {
  /** The sites that advertised, sorted. */
  ids: string[];
  root: Uint8Array;
  advertisements: { ad: ParsedAdvertisement; proof: Uint8Array }[];
}

/** The most sibling hashes a proof can hold (2^64 leaves). */
const MAX_PROOF_BYTES = 64 * 32;

/**
 * The bitmap of `members` over `rosterIds` (sorted), base64: the `sites` of a neighbourhood message.
 *
 * @example
 * membershipBitmap(['a', 'b', 'c'], new Set(['a', 'c'])); // 'BQ==' (0b101)
 */
export function membershipBitmap(
  rosterIds: readonly string[],
  members: ReadonlySet<string>,
): string {
  const bits = new Uint8Array(Math.ceil(rosterIds.length / 8));
  rosterIds.forEach((id, i) => {
    if (members.has(id)) bits[i >> 3] = (bits[i >> 3] as number) | (1 << (i & 7));
  });
  return toBase64(bits);
}

/** The roster's ids whose bit is set (sorted like the roster); BAD_INPUT on a bitmap of another size. */
function membersOf(bitmap: unknown, rosterIds: readonly string[]): string[] {
  const bits = fromBase64(bitmap, Math.ceil(rosterIds.length / 8), 'sites bitmap');
  const out: string[] = [];
  for (let i = 0; i < bits.length * 8; i++) {
    if (((bits[i >> 3] as number) >> (i & 7)) & 1) {
      if (i >= rosterIds.length) {
        throw new SecAggError('BAD_INPUT', 'the sites bitmap names sites beyond the roster');
      }
      out.push(rosterIds[i] as string);
    }
  }
  return out;
}

/**
 * Checks the shape of a neighbourhood message against the round's roster (ids sorted with
 * compareIds): a bitmap of the roster's size, a 32-byte root, at most `maxAdvertisements`
 * advertisements with proofs of whole hashes. Membership and the graph are the client's checks.
 *
 * @example
 * parseNeighbourhood(msg.advertisements, [...roster.keys()].sort(compareIds), k + 1).ids;
 */
export function parseNeighbourhood(
  value: unknown,
  rosterIds: readonly string[],
  maxAdvertisements: number,
): ParsedNeighbourhood {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SecAggError('BAD_INPUT', 'the neighbourhood advertisements must be an object');
  }
  const r = value as Record<string, unknown>;
  const ids = membersOf(r['sites'], rosterIds);
  const root = fromBase64(r['root'], 32, 'advertisement root');
  const list = r['advertisements'];
  if (!Array.isArray(list) || list.length > maxAdvertisements) {
    throw new SecAggError(
      'BAD_INPUT',
      `the neighbourhood advertisements must be an array of at most ${maxAdvertisements}`,
    );
  }
  const advertisements = (list as unknown[]).map((raw) => {
    const ad = parseAdvertisement(raw);
    const proof = fromBase64(
      (raw as Record<string, unknown>)['proof'],
      undefined,
      `proof of ${ad.siteId}`,
    );
    if (proof.length % 32 !== 0 || proof.length > MAX_PROOF_BYTES) {
      throw new SecAggError('BAD_INPUT', `the proof of ${ad.siteId} is not a list of hashes`);
    }
    return { ad, proof };
  });
  return { ids, root, advertisements };
}

/** The roster's ids in the order bitmaps use. */
export function sortedRosterIds(roster: ReadonlyMap<string, unknown>): string[] {
  return [...roster.keys()].sort(compareIds);
}
