import type { Logger } from '@nestjs/common';

export interface PollingWorkerOptions {
  /** Claims and works one batch; answers how many it claimed. */
  runOnce: () => Promise<number>;
  /** A batch this full means a backlog: claim again at once instead of waiting. */
  batchSize: () => number;
  /** Wait between polls when the last batch was not full. */
  pollMs: () => number;
  logger: Logger;
  /** The log message of a failed batch (its error code only: no content). */
  failure: string;
}

/**
 * The loop of a worker that claims batches of its own rows (a lean outbox table: nothing in
 * process memory decides ownership): claim, work, and wait the poll interval unless the batch was
 * full or `wake()` is called; an error is logged and the loop goes on. `stop()` lets the batch in
 * flight finish (before the database closes).
 */
export class PollingWorker {
  private running?: Promise<void>;
  private stopping = false;
  private wakeUp?: () => void;

  constructor(private readonly options: PollingWorkerOptions) {}

  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the current wait early (e.g. rows were just inserted on this node). */
  wake(): void {
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeUp?.();
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let claimed = 0;
      try {
        claimed = await this.options.runOnce();
      } catch (err) {
        this.options.logger.warn({ msg: this.options.failure, code: (err as { code?: string }).code ?? 'error' });
      }
      if (claimed < this.options.batchSize() && !this.stopping) await this.idle();
    }
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.options.pollMs());
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wakeUp = undefined;
        resolve();
      }
      this.wakeUp = done;
    });
  }
}
