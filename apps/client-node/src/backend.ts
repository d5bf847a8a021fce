import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

/** Which tfjs backend a site asks for; 'auto' takes the fastest one that loads. */
export type BackendPreference = 'auto' | 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';

/** A backend that was (or could be) selected. */
export type BackendName = Exclude<BackendPreference, 'auto'>;

/** The selected backend and a human-readable line for logs and the site's status report. */
export interface SelectedBackend {
  backend: BackendName;
  detail: string;
}

const AUTO_ORDER: readonly BackendName[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

/** Optional native packages: never in package.json, loaded only when present on the site. */
const NATIVE_PACKAGES = {
  'tfjs-node-gpu': {
    pkg: '@tensorflow/tfjs-node-gpu',
    needs: 'Linux x64 with an NVIDIA driver, CUDA and cuDNN versions that TensorFlow 2.9 supports',
    what: 'TensorFlow C library with CUDA',
  },
  'tfjs-node': {
    pkg: '@tensorflow/tfjs-node',
    needs: 'Linux, macOS or Windows on x64 (or macOS arm64)',
    what: 'TensorFlow C library on the CPU',
  },
} as const;

let current: { pref: BackendPreference; selected: SelectedBackend } | undefined;
let wasmPathsSet = false;

/** Thrown when a backend cannot be loaded; `reason` is the short form logged by 'auto'. */
class BackendUnavailable extends Error {
  constructor(
    readonly reason: string,
    message: string,
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = 'BackendUnavailable';
  }
}

const reasonOf = (err: unknown): string => {
  const e = err as { code?: string; message?: string } | undefined;
  if (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') return 'not installed';
  return (e?.message ?? String(err)).split('\n')[0] ?? 'unknown error';
};

async function activate(tfName: string): Promise<void> {
  // setBackend logs and resolves false (rather than throwing) when initialisation fails.
  if (!(await tf.setBackend(tfName))) {
    throw new Error(`tfjs could not initialise its "${tfName}" backend`);
  }
  await tf.ready();
}

async function loadNative(name: 'tfjs-node-gpu' | 'tfjs-node'): Promise<string> {
  const { pkg, needs, what } = NATIVE_PACKAGES[name];
  try {
    // A variable specifier keeps TypeScript and bundlers from resolving a package that is not installed.
    const specifier: string = pkg;
    await import(/* @vite-ignore */ specifier);
    if (tf.findBackendFactory('tensorflow') === null) {
      throw new Error(
        `${pkg} loaded but registered no "tensorflow" backend with this copy of @tensorflow/tfjs ` +
          `${tf.version.tfjs}: install the ${pkg} version that matches it`,
      );
    }
    await activate('tensorflow');
  } catch (err) {
    const reason = reasonOf(err);
    throw new BackendUnavailable(
      reason,
      `backend "${name}" is not available: cannot load ${pkg} (${reason}). ` +
        `Install it with \`npm install ${pkg}@${tf.version.tfjs}\` (needs ${needs}), ` +
        'or choose the "wasm" or "auto" backend.',
      err,
    );
  }
  return `${what} via ${pkg}`;
}

async function loadWasm(): Promise<string> {
  const pkg = '@tensorflow/tfjs-backend-wasm';
  let dir = '';
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // In Node the .wasm binaries are read from disk: point the loader at the package's dist/ folder.
    dir = dirname(createRequire(import.meta.url).resolve(`${pkg}/dist/tfjs-backend-wasm.wasm`));
    if (!wasmPathsSet) {
      // Allowed only once, before the backend is first initialised.
      wasm.setWasmPaths(`${dir}/`);
      wasmPathsSet = true;
    }
    await activate('wasm');
  } catch (err) {
    const reason = reasonOf(err);
    throw new BackendUnavailable(
      reason,
      `backend "wasm" is not available: ${reason}. It ships with Confide as ${pkg}; ` +
        'reinstall the dependencies (`npm ci`) or choose the "cpu" backend.',
      err,
    );
  }
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  return `WebAssembly (SIMD ${simd ? 'on' : 'off'}, threads ${threads ? 'on' : 'off'}), binaries from ${dir}`;
}

async function load(name: BackendName): Promise<SelectedBackend> {
  switch (name) {
    case 'tfjs-node-gpu':
    case 'tfjs-node':
      return { backend: name, detail: await loadNative(name) };
    case 'wasm':
      return { backend: name, detail: await loadWasm() };
    case 'cpu':
      await activate('cpu');
      return { backend: name, detail: 'plain JavaScript (slowest; prefer wasm or tfjs-node)' };
  }
}

/**
 * Registers and activates the tfjs backend for this process. 'auto' tries tfjs-node-gpu, tfjs-node,
 * wasm, then cpu; an explicit choice that cannot load throws an Error naming the package and how to
 * install it. Calling it again with the same preference returns the backend already active.
 */
export async function selectBackend(
  pref: BackendPreference,
  log: (msg: string) => void = () => {},
): Promise<SelectedBackend> {
  if (
    current !== undefined &&
    (pref === current.pref || pref === current.selected.backend) &&
    tf.getBackend() === tfBackendName(current.selected.backend)
  ) {
    return current.selected;
  }
  if (pref !== 'auto' && !AUTO_ORDER.includes(pref)) {
    throw new Error(
      `unknown backend ${JSON.stringify(pref)}: choose one of auto, ${AUTO_ORDER.join(', ')}`,
    );
  }
  for (const name of pref === 'auto' ? AUTO_ORDER : [pref]) {
    try {
      const selected = await load(name);
      current = { pref, selected };
      log(`tfjs backend: ${selected.backend}, ${selected.detail}`);
      return selected;
    } catch (err) {
      if (pref !== 'auto' || !(err instanceof BackendUnavailable)) throw err;
      log(`tfjs backend ${name} skipped: ${err.reason}`);
    }
  }
  throw new Error('no tfjs backend could be initialised, not even "cpu"');
}

function tfBackendName(name: BackendName): string {
  return name === 'tfjs-node-gpu' || name === 'tfjs-node' ? 'tensorflow' : name;
}
