import { parentPort, workerData } from 'node:worker_threads';

/**
 * HTTP load for one query in its own thread, so the server's event loop (same process) does not
 * delay the client's clock: `concurrency` loops each send the next request when the last answered,
 * until `maxRequests` or `maxSeconds`. Latency is measured from send to last byte.
 */
interface Job {
  url: string;
  token: string;
  concurrency: number;
  maxRequests: number;
  maxSeconds: number;
}

async function run(job: Job): Promise<{ latencies: number[]; errors: string[]; seconds: number }> {
  const latencies: number[] = [];
  const errors: string[] = [];
  const started = performance.now();
  const deadline = started + job.maxSeconds * 1000;
  let issued = 0;
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (issued < job.maxRequests && performance.now() < deadline) {
        issued++;
        const t0 = performance.now();
        const res = await fetch(job.url, { headers: { Authorization: `Bearer ${job.token}`, Accept: 'application/fhir+json' } });
        const body = await res.arrayBuffer();
        latencies.push(performance.now() - t0);
        if (res.status !== 200) errors.push(`${res.status} ${Buffer.from(body).toString('utf8').slice(0, 200)}`);
      }
    }),
  );
  return { latencies, errors, seconds: (performance.now() - started) / 1000 };
}

run(workerData as Job).then(
  (result) => parentPort!.postMessage(result),
  (err: unknown) => parentPort!.postMessage({ latencies: [], errors: [String(err)], seconds: 0 }),
);
