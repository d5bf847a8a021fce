/** Where a node reports progress: a bar on a terminal, a line per epoch otherwise. */
export interface Progress {
  epoch(info: {
    round: number;
    epoch: number;
    epochs: number;
    batch: number;
    batches: number;
    loss: number;
  }): void;
  done(): void;
}

/** A progress bar per local epoch on `stream` (stderr), redrawn in place on a TTY. */
export function progressBar(stream: NodeJS.WriteStream = process.stderr, label = ''): Progress {
  const tty = Boolean(stream.isTTY);
  let lastLine = '';
  return {
    epoch({ round, epoch, epochs, batch, batches, loss }) {
      const width = 24;
      const filled = Math.round((batch / Math.max(1, batches)) * width);
      const line = `${label}round ${round} epoch ${epoch}/${epochs} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${batch}/${batches} loss ${loss.toFixed(4)}`;
      if (tty) {
        stream.write(`\r${line}`);
        lastLine = line;
      } else if (batch === batches) {
        stream.write(`${line}\n`);
      }
    },
    done() {
      if (tty && lastLine) stream.write('\n');
      lastLine = '';
    },
  };
}

/** Reports nothing (tests, the demo's quiet mode). */
export const silentProgress: Progress = { epoch: () => undefined, done: () => undefined };
