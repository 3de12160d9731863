import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { PgBoss } from 'pg-boss';
import type { DataSource, EntityManager } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app.config';

/** The schema the job-queue migration builds (migrations/1732402330000-job-queue.ts). */
export const JOB_SCHEMA = 'pgboss';

/** How a queue retries: at-least-once delivery, the handler must be idempotent. */
export interface JobQueuePolicy {
  /** Attempts after the first before the job is `failed`. */
  retryLimit: number;
  /** Seconds before the first retry; doubled each time (with jitter) when `retryBackoff`. */
  retryDelaySeconds: number;
  retryBackoff: boolean;
  /** Upper bound of a backed-off delay. */
  retryDelayMaxSeconds?: number;
  /** A job still active this long is taken as lost (its worker died) and retried. */
  expireInSeconds: number;
  /**
   * Long jobs: the worker refreshes the job's heartbeat every half of this (pg-boss does it while
   * the handler runs), and a job whose heartbeat is this old is taken as lost and retried, so a
   * dead worker is noticed in seconds while `expireInSeconds` can be hours. Set when the queue is
   * created (at least 10).
   */
  heartbeatSeconds?: number;
  /**
   * Whether a committed job wakes the workers at once (LISTEN/NOTIFY; default true). False for a
   * queue worked in batches: its jobs wait for the worker's poll and are taken together.
   */
  notify?: boolean;
}

export interface QueuedJob<T> {
  id: string;
  queue: string;
  data: T;
  /** Attempts before this one (0 on the first). */
  retryCount: number;
}

export type JobHandler<T> = (job: QueuedJob<T>) => Promise<void>;

/** Handles the jobs fetched together; a throw retries every one of them (handlers are idempotent). */
export type JobBatchHandler<T> = (jobs: QueuedJob<T>[]) => Promise<void>;

export interface EnqueueOptions {
  /** At most one queued job per key and queue (pg-boss singletonKey): idempotent enqueue. */
  singletonKey?: string;
  /** Run no earlier than this many seconds after the commit. */
  startAfterSeconds?: number;
}

/** Ids, queue names and counts only: job data may be PHI. */
interface Registration {
  policy: JobQueuePolicy;
  handler?: JobHandler<unknown>;
  /** Set by `workBatch`: up to `size` jobs per fetch, fetched every `pollSeconds`. */
  batch?: { handler: JobBatchHandler<unknown>; size: number; pollSeconds: number };
  concurrency: number;
}

/**
 * The outbox (GUIDE §6): pg-boss on the application's PostgreSQL. `enqueue` inserts the job with
 * the caller's transaction, so the job exists exactly when the write that caused it committed, and
 * survives any crash after that commit; workers on every app node take jobs with SKIP LOCKED, a
 * failed attempt is retried with exponential backoff, and a job whose worker died (kill -9) is
 * retried once its `expireInSeconds` passed. Modules `define` their queues (and `work` them) in
 * `onModuleInit`; the queues are created and the workers started at application bootstrap.
 */
@Injectable()
export class JobQueue implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('JobQueue');
  private readonly queues = new Map<string, Registration>();
  private boss?: PgBoss;
  private started?: Promise<void>;

  constructor(
    @InjectDataSource() private readonly db: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Declares a queue; a second definition of one name is a programming error. */
  define(name: string, policy: JobQueuePolicy): void {
    if (this.boss) throw new Error(`job queue ${name} defined after start`);
    if (this.queues.has(name)) throw new Error(`job queue ${name} is defined twice`);
    if (!/^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*$/.test(name)) throw new Error(`job queue name ${name} must be lower-case words joined by - and .`);
    this.queues.set(name, { policy, concurrency: 1 });
  }

  /**
   * Handles a defined queue's jobs on this node (when `JOBS_WORKERS` is on): from bootstrap on, or
   * at once when called later (a worker that starts with the node's role, a test).
   */
  async work<T>(name: string, handler: JobHandler<T>, options: { concurrency?: number } = {}): Promise<void> {
    const reg = this.registration(name);
    if (reg.handler || reg.batch) throw new Error(`job queue ${name} has a handler already`);
    reg.handler = handler as JobHandler<unknown>;
    reg.concurrency = options.concurrency ?? 1;
    if (this.boss && this.config.jobs.workers) await this.startWorker(this.boss, name, reg);
  }

  /**
   * Handles a defined queue's jobs in batches (when `JOBS_WORKERS` is on): each fetch takes up to
   * `batchSize` jobs, every `pollSeconds` while the queue is idle and at once after a full batch.
   * With the queue's `notify` off, jobs committed between two polls are coalesced into one handler
   * call (work that costs per call, not per job, is paid once per batch).
   */
  async workBatch<T>(name: string, handler: JobBatchHandler<T>, options: { concurrency?: number; batchSize: number; pollSeconds: number }): Promise<void> {
    const reg = this.registration(name);
    if (reg.handler || reg.batch) throw new Error(`job queue ${name} has a handler already`);
    reg.batch = { handler: handler as JobBatchHandler<unknown>, size: options.batchSize, pollSeconds: options.pollSeconds };
    reg.concurrency = options.concurrency ?? 1;
    if (this.boss && this.config.jobs.workers) await this.startWorker(this.boss, name, reg);
  }

  /**
   * Enqueues in `tx`, the write's own transaction: rolled back with it, committed with it. Answers
   * the job id (null when `singletonKey` found one queued already).
   */
  async enqueue<T extends object>(tx: EntityManager, name: string, data: T, options: EnqueueOptions = {}): Promise<string | null> {
    this.registration(name);
    const runner = this.transactionOf(tx, name);
    const boss = await this.ready();
    return boss.send(name, data, {
      db: this.executorOf(runner),
      ...(options.singletonKey ? { singletonKey: options.singletonKey } : {}),
      ...(options.startAfterSeconds ? { startAfter: options.startAfterSeconds } : {}),
    });
  }

  private transactionOf(tx: EntityManager, name: string): NonNullable<EntityManager['queryRunner']> {
    const runner = tx.queryRunner;
    if (!runner?.isTransactionActive) throw new Error(`job ${name} enqueued outside a transaction`);
    return runner;
  }

  private executorOf(runner: NonNullable<EntityManager['queryRunner']>): { executeSql: (text: string, values?: unknown[]) => Promise<{ rows: unknown[] }> } {
    return { executeSql: async (text: string, values?: unknown[]) => ({ rows: (await runner.query(text, values as unknown[], true)).records }) };
  }

  /** State of one job, for tests and admin views: `created`, `retry`, `active`, `completed`, `failed`, `cancelled`. */
  async state(name: string, id: string): Promise<{ state: string; retryCount: number } | undefined> {
    const boss = await this.ready();
    const [job] = await boss.findJobs(name, { id });
    return job ? { state: job.state, retryCount: job.retryCount } : undefined;
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.ready();
  }

  private ready(): Promise<PgBoss> {
    this.started ??= this.start();
    return this.started.then(() => this.boss!);
  }

  private async start(): Promise<void> {
    const url = (this.db.options as { url?: string }).url;
    const boss = new PgBoss({
      connectionString: url,
      schema: JOB_SCHEMA,
      max: this.config.jobs.poolSize,
      application_name: 'fhir-hie-jobs',
      // The schema is the migrations' (the app's role may not run DDL).
      migrate: false,
      createSchema: false,
      schedule: false,
      superviseIntervalSeconds: this.config.jobs.superviseSeconds,
      // Wakes workers on a committed job at once; polling stays as the floor.
      useListenNotify: true,
    } as ConstructorParameters<typeof PgBoss>[0]);
    // pg-boss reports errors of its own loops here; without a listener an 'error' event throws.
    boss.on('error', (err: unknown) => this.logger.error({ msg: 'job queue error', code: (err as { code?: string }).code ?? 'unknown' }));
    await boss.start();
    this.boss = boss;
    for (const [name, { policy }] of this.queues) {
      const options = {
        retryLimit: policy.retryLimit,
        retryDelay: policy.retryDelaySeconds,
        retryBackoff: policy.retryBackoff,
        ...(policy.retryDelayMaxSeconds ? { retryDelayMax: policy.retryDelayMaxSeconds } : {}),
        expireInSeconds: policy.expireInSeconds,
        notify: policy.notify ?? true,
      };
      await boss.createQueue(name, { ...options, ...(policy.heartbeatSeconds ? { heartbeatSeconds: policy.heartbeatSeconds } : {}) });
      // A policy changed in code applies to the queue created by an earlier version too.
      await boss.updateQueue(name, options);
    }
    if (!this.config.jobs.workers) return;
    for (const [name, reg] of this.queues) if (reg.handler || reg.batch) await this.startWorker(boss, name, reg);
  }

  /**
   * `concurrency` fetch loops of one job each. A loop that finished a job fetches again at once
   * (`notifyWorker`): pg-boss otherwise waits its poll interval after every job of a batch size of
   * one, which capped a backlog at concurrency / JOBS_POLL_SECONDS jobs a second (2/s for identity
   * matching). An empty fetch still waits the interval.
   */
  private async startWorker(boss: PgBoss, name: string, reg: Registration): Promise<void> {
    for (let i = 0; i < reg.concurrency; i++) await this.startFetchLoop(boss, name, reg);
  }

  private async startFetchLoop(boss: PgBoss, name: string, reg: Registration): Promise<void> {
    if (reg.batch) return this.startBatchFetchLoop(boss, name, reg.batch);
    const handler = reg.handler!;
    let workerId: string | undefined;
    workerId = await boss.work<unknown>(
      name,
      {
        batchSize: 1,
        localConcurrency: 1,
        pollingIntervalSeconds: this.config.jobs.pollSeconds,
        // A retry coming due sends no NOTIFY: the backstop poll is what finds it, so not pg-boss's 30 s.
        notifyPollingIntervalSeconds: this.config.jobs.pollSeconds,
        includeMetadata: true,
      },
      async ([job]) => {
        const started = Date.now();
        try {
          await handler({ id: job.id, queue: name, data: job.data, retryCount: job.retryCount });
          this.logger.debug({ msg: 'job done', queue: name, job: job.id, ms: Date.now() - started });
        } catch (err) {
          this.logger.warn({ msg: 'job failed', queue: name, job: job.id, attempt: job.retryCount + 1, code: (err as { code?: string }).code ?? 'error' });
          throw err;
        } finally {
          // There may be more: look again without waiting the poll interval.
          if (workerId) boss.notifyWorker(workerId);
        }
      },
    );
  }

  private async startBatchFetchLoop(boss: PgBoss, name: string, batch: NonNullable<Registration['batch']>): Promise<void> {
    await boss.work<unknown>(
      name,
      // A full batch means a backlog: fetch again at once (burstWhenBatchFull) rather than after the poll.
      { batchSize: batch.size, localConcurrency: 1, pollingIntervalSeconds: batch.pollSeconds, notifyPollingIntervalSeconds: batch.pollSeconds, burstWhenBatchFull: true, includeMetadata: true },
      async (jobs) => {
        const started = Date.now();
        try {
          await batch.handler(jobs.map((job) => ({ id: job.id, queue: name, data: job.data, retryCount: job.retryCount })));
          this.logger.debug({ msg: 'job batch done', queue: name, jobs: jobs.length, ms: Date.now() - started });
        } catch (err) {
          this.logger.warn({ msg: 'job batch failed', queue: name, jobs: jobs.length, code: (err as { code?: string }).code ?? 'error' });
          throw err;
        }
      },
    );
  }

  private registration(name: string): Registration {
    const reg = this.queues.get(name);
    if (!reg) throw new Error(`job queue ${name} is not defined`);
    return reg;
  }

  /** Lets running jobs finish (up to the timeout); unfinished ones are retried after they expire. */
  async onApplicationShutdown(): Promise<void> {
    const started = this.started;
    this.started = undefined;
    await started?.catch(() => undefined);
    const boss = this.boss;
    this.boss = undefined;
    await boss?.stop({ graceful: true, timeout: 10_000 });
  }
}
