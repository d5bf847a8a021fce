/**
 * Why a simulation cannot run: `input`, a setting that cannot work (the CLI's exit code 2, with the
 * option to change named in the message); `run`, something that went wrong while it ran (exit 1).
 */
export class SimulationError extends Error {
  constructor(
    readonly kind: 'input' | 'run',
    message: string,
  ) {
    super(message);
    this.name = 'SimulationError';
  }
}
