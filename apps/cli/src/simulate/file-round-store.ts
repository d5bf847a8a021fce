import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  ModelHead,
  RoundRecord,
  RoundStore,
  SerializedStrategyState,
} from '@confide/federated';
import { SimulationError } from './errors';

/** The store's index: the committed model's round, strategy state and weights file, and the records. */
interface StoreIndex {
  format: 'confide.simulation-store/1';
  head: { round: number; strategyState: SerializedStrategyState | null; weights: string };
  records: RoundRecord[];
}

const INDEX = 'rounds.json';

/**
 * A RoundStore in a directory, for `confide simulate --data-dir`: `rounds.json` (the round records
 * and the committed model's round and strategy state) and one float32 weights file per committed
 * model, `model-<round>.f32` (little-endian). Every write goes to a temporary file renamed over the
 * old one, and a commit writes the new weights file before the index that names it, so the model,
 * its strategy state and the round's record appear together or not at all.
 *
 * @example
 * const store = await FileRoundStore.open('./sim', initialWeights(spec, 1));
 */
export class FileRoundStore implements RoundStore {
  private constructor(
    private readonly dir: string,
    private index: StoreIndex,
    private weights: Float32Array,
  ) {}

  /** Opens the store in `dir`, creating it with `initialWeights` as round 0 when empty. */
  static async open(dir: string, initialWeights: Float32Array): Promise<FileRoundStore> {
    await mkdir(dir, { recursive: true });
    let text: string | null = null;
    try {
      text = await readFile(join(dir, INDEX), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text === null) {
      const store = new FileRoundStore(
        dir,
        {
          format: 'confide.simulation-store/1',
          head: { round: 0, strategyState: null, weights: weightsFile(0) },
          records: [],
        },
        initialWeights.slice(),
      );
      await store.writeWeights(0, store.weights);
      await store.writeIndex();
      return store;
    }
    const index = parseIndex(text, dir);
    const bytes = await readFile(join(dir, index.head.weights)).catch(() => {
      throw new SimulationError('input', `${dir}: ${index.head.weights} is missing`);
    });
    if (bytes.byteLength !== initialWeights.length * 4) {
      throw new SimulationError(
        'input',
        `${dir}: the stored model has ${bytes.byteLength / 4} weights; this model has ` +
          `${initialWeights.length}`,
      );
    }
    const weights = new Float32Array(initialWeights.length);
    new Uint8Array(weights.buffer).set(bytes);
    return new FileRoundStore(dir, index, weights);
  }

  head(): Promise<ModelHead> {
    return Promise.resolve({
      round: this.index.head.round,
      weights: this.weights,
      strategyState: this.index.head.strategyState,
    });
  }

  unfinished(): Promise<RoundRecord | null> {
    return Promise.resolve(this.index.records.find((r) => r.status === 'running') ?? null);
  }

  async begin(record: RoundRecord): Promise<void> {
    const last = Math.max(this.index.head.round, ...this.index.records.map((r) => r.round));
    if (record.round <= last) throw new Error(`round ${record.round} is not after round ${last}`);
    this.index.records.push(structuredClone(record));
    await this.writeIndex();
  }

  async commit(record: RoundRecord, model: ModelHead): Promise<void> {
    const previous = this.index.head.weights;
    const file = weightsFile(model.round);
    await this.writeWeights(model.round, model.weights);
    this.replace(record);
    this.index.head = { round: model.round, strategyState: model.strategyState, weights: file };
    await this.writeIndex();
    this.weights = model.weights.slice();
    if (previous !== file) await rm(join(this.dir, previous), { force: true });
  }

  async abort(record: RoundRecord): Promise<void> {
    this.replace(record);
    await this.writeIndex();
  }

  rounds(): Promise<readonly RoundRecord[]> {
    return Promise.resolve(this.index.records.map((r) => structuredClone(r)));
  }

  private replace(record: RoundRecord): void {
    const i = this.index.records.findIndex((r) => r.round === record.round);
    if (i < 0) throw new Error(`round ${record.round} was never begun`);
    this.index.records[i] = structuredClone(record);
  }

  private async writeWeights(round: number, weights: Float32Array): Promise<void> {
    const bytes = new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength);
    await writeAtomically(join(this.dir, weightsFile(round)), bytes);
  }

  private writeIndex(): Promise<void> {
    return writeAtomically(join(this.dir, INDEX), `${JSON.stringify(this.index, null, 1)}\n`);
  }
}

function weightsFile(round: number): string {
  return `model-${String(round).padStart(6, '0')}.f32`;
}

/** Writes to a temporary file beside `path`, then renames it over `path`. */
export async function writeAtomically(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

function parseIndex(text: string, dir: string): StoreIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SimulationError('input', `${dir}/${INDEX} is not JSON: ${(e as Error).message}`);
  }
  const index = json as Partial<StoreIndex> | null;
  if (
    index?.format !== 'confide.simulation-store/1' ||
    typeof index.head?.round !== 'number' ||
    typeof index.head.weights !== 'string' ||
    !/^model-\d{6,}\.f32$/.test(index.head.weights) ||
    !Array.isArray(index.records)
  ) {
    throw new SimulationError(
      'input',
      `${dir}/${INDEX} is not a simulation store (written by confide simulate --data-dir)`,
    );
  }
  return index as StoreIndex;
}
