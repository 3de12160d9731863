import { ChildProcess, execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Injectable, Module, OnModuleInit } from '@nestjs/common';
import { JobQueue, QueuedJob } from '../../src/jobs/job-queue';
import { createTestApp, TestApp } from '../support/test-app';

// Short enough for a test: workers poll every 0.5 s, the supervisor retries dead workers' jobs every second.
process.env.JOBS_POLL_SECONDS = '0.5';
process.env.JOBS_SUPERVISE_SECONDS = '1';

const CRASH_POLICY = { retryLimit: 3, retryDelaySeconds: 1, retryBackoff: false, expireInSeconds: 2 };

const seen: Record<string, QueuedJob<{ n: number }>[]> = { once: [], flaky: [], crash: [] };
const attemptsAt: number[] = [];

@Injectable()
class TestQueues implements OnModuleInit {
  constructor(private readonly jobs: JobQueue) {}

  onModuleInit(): void {
    this.jobs.define('test.once', { retryLimit: 2, retryDelaySeconds: 1, retryBackoff: true, expireInSeconds: 60 });
    this.jobs.define('test.flaky', { retryLimit: 4, retryDelaySeconds: 1, retryBackoff: true, expireInSeconds: 60 });
    this.jobs.define('test.crash', CRASH_POLICY);
    void this.jobs.work<{ n: number }>('test.once', async (job) => {
      seen.once.push(job);
    });
    void this.jobs.work<{ n: number }>('test.flaky', async (job) => {
      seen.flaky.push(job);
      attemptsAt.push(Date.now());
      if (job.retryCount < 2) throw new Error('receiver down');
    });
    // test.crash gets its handler only after the child process that took the job was killed.
  }
}

@Module({ providers: [TestQueues] })
class TestQueuesModule {}

async function until<T>(what: string, probe: () => T | undefined | false, ms = 30_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The outbox (src/jobs/, docs/architecture.md): jobs enqueued in a write's transaction, delivered at least once. */
describe('job queue (outbox on pg-boss)', () => {
  let t: TestApp;
  let jobs: JobQueue;

  beforeAll(async () => {
    t = await createTestApp({ imports: [TestQueuesModule] });
    jobs = t.app.get(JobQueue);
  });
  afterAll(async () => {
    await t.close();
  });

  it('runs a job enqueued in a committed transaction once, with its data; a rolled-back one never exists', async () => {
    const committed = await t.db.transaction((tx) => jobs.enqueue(tx, 'test.once', { n: 1 }));
    let rolledBack: string | null = null;
    await expect(
      t.db.transaction(async (tx) => {
        rolledBack = await jobs.enqueue(tx, 'test.once', { n: 2 });
        throw new Error('the write failed');
      }),
    ).rejects.toThrow('the write failed');
    await until('the committed job', () => seen.once.length === 1);
    expect(seen.once).toEqual([{ id: committed, queue: 'test.once', data: { n: 1 }, retryCount: 0 }]);
    expect(rolledBack).toMatch(/^[0-9a-f-]{36}$/);
    expect(await jobs.state('test.once', rolledBack!)).toBeUndefined();
    expect((await jobs.state('test.once', committed!))?.state).toBe('completed');
    // Nothing else ran in the meantime (the rolled-back job in particular).
    await new Promise((r) => setTimeout(r, 1500));
    expect(seen.once.map((j) => j.data.n)).toEqual([1]);
  });

  it('refuses an enqueue outside a transaction and an undefined queue', async () => {
    await expect(jobs.enqueue(t.db.manager, 'test.once', { n: 3 })).rejects.toThrow('enqueued outside a transaction');
    await expect(t.db.transaction((tx) => jobs.enqueue(tx, 'test.none', { n: 4 }))).rejects.toThrow('job queue test.none is not defined');
  });

  it('retries a failing job with exponential backoff until it succeeds', async () => {
    const id = await t.db.transaction((tx) => jobs.enqueue(tx, 'test.flaky', { n: 5 }));
    await until('three attempts', () => seen.flaky.length === 3, 30_000).catch(async (e) => {
      // What ran, and where the job stands, so a failure says why.
      throw new Error(`${e} ${JSON.stringify(seen.flaky)} ${JSON.stringify(await jobs.state('test.flaky', id!))} ${attemptsAt.map((a) => a - attemptsAt[0])}`);
    });
    expect(seen.flaky.map((j) => [j.id, j.retryCount])).toEqual([
      [id, 0],
      [id, 1],
      [id, 2],
    ]);
    // retryDelay 1 s doubled with jitter: the second retry waits at least 2 s, the first at least 1 s.
    expect(attemptsAt[1] - attemptsAt[0]).toBeGreaterThanOrEqual(900);
    expect(attemptsAt[2] - attemptsAt[1]).toBeGreaterThanOrEqual(1900);
    await new Promise((r) => setTimeout(r, 700));
    expect(await jobs.state('test.flaky', id!)).toEqual({ state: 'completed', retryCount: 2 });
  });

  describe('a job whose worker process is killed with SIGKILL mid-job', () => {
    const outDir = join(__dirname, '..', '..', `dist-jobs-test-${process.pid}`);
    let child: ChildProcess | undefined;
    afterAll(() => {
      if (child && child.exitCode === null) child.kill('SIGKILL');
      rmSync(outDir, { recursive: true, force: true });
    });

    it('is retried by another node once it expires, and completes there', async () => {
      await promisify(execFile)(process.execPath, [join(__dirname, '..', 'support', 'compile-server.js'), outDir]);
      const url = (t.db.options as { url: string }).url;
      // Another app node, reduced to its job queue: takes the job, then dies without a word.
      const script = `
        require('reflect-metadata');
        const { JobQueue } = require(${JSON.stringify(join(outDir, 'jobs', 'job-queue.js'))});
        const q = new JobQueue({ options: { url: process.env.JOB_DB_URL } }, { jobs: { workers: true, poolSize: 2, pollSeconds: 0.5, superviseSeconds: 1 } });
        q.define('test.crash', ${JSON.stringify(CRASH_POLICY)});
        q.work('test.crash', async (job) => { process.stdout.write('started ' + job.id + '\\n'); await new Promise(() => {}); });
        q.onApplicationBootstrap().then(() => process.stdout.write('ready\\n'));`;
      let out = '';
      child = spawn(process.execPath, ['-e', script], { cwd: join(__dirname, '..', '..'), env: { ...process.env, JOB_DB_URL: url }, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      await until('the child node ready', () => out.includes('ready') || child!.exitCode !== null, 60_000);
      expect(out).toContain('ready');

      const id = await t.db.transaction((tx) => jobs.enqueue(tx, 'test.crash', { n: 6 }));
      await until('the child to take the job', () => out.includes(`started ${id}`));
      child.kill('SIGKILL');
      await until('the child to die', () => child!.exitCode !== null || child!.signalCode !== null);
      expect((await jobs.state('test.crash', id!))?.state).toBe('active');

      await jobs.work<{ n: number }>('test.crash', async (job) => {
        seen.crash.push(job);
      });
      await until('the retried job', () => seen.crash.length === 1, 60_000);
      expect(seen.crash).toEqual([{ id, queue: 'test.crash', data: { n: 6 }, retryCount: 1 }]);
      await new Promise((r) => setTimeout(r, 700));
      expect(await jobs.state('test.crash', id!)).toEqual({ state: 'completed', retryCount: 1 });
    });
  });
});
