import { Injectable, Module, OnModuleInit } from '@nestjs/common';
import { JobQueue } from '../../src/jobs/job-queue';
import { createTestApp, TestApp } from '../support/test-app';
import { jobsSettled } from '../support/jobs';

// A poll interval far longer than the test may wait: only fetching again after a job drains the backlog.
process.env.JOBS_POLL_SECONDS = '60';

const handled: number[] = [];

@Injectable()
class BacklogQueue implements OnModuleInit {
  constructor(private readonly jobs: JobQueue) {}

  onModuleInit(): void {
    this.jobs.define('test.backlog', { retryLimit: 0, retryDelaySeconds: 1, retryBackoff: false, expireInSeconds: 60 });
    void this.jobs.work<{ n: number }>('test.backlog', async (job) => void handled.push(job.data.n), { concurrency: 2 });
  }
}

@Module({ providers: [BacklogQueue] })
class BacklogQueueModule {}

/**
 * A backlog drains at the handlers' pace, not one job per worker per poll interval: a worker that
 * finished a job fetches the next at once (src/jobs/job-queue.ts). With one job per fetch pg-boss
 * waited the poll interval after each job, which held identity matching at 2 jobs a second.
 */
describe('job queue: a backlog is worked without waiting the poll interval between jobs', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ imports: [BacklogQueueModule] });
  });
  afterAll(async () => t?.close());

  it('30 jobs committed at once are all handled within 30 s at a 60 s poll interval (two workers)', async () => {
    const jobs = t.app.get(JobQueue);
    await t.db.transaction(async (tx) => {
      for (let n = 0; n < 30; n++) await jobs.enqueue(tx, 'test.backlog', { n });
    });
    // One NOTIFY wakes the two workers; before the change each then slept 60 s after its first job.
    await jobsSettled(t.db, 'test.backlog', 300);
    expect([...handled].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, n) => n));
  });
});
