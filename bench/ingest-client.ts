/**
 * The HTTP clients of bench:ingest, in a child process so that their work (sending the Bundles,
 * reading the answers) neither competes with the server's event loop nor counts as server CPU.
 * Protocol (IPC): parent sends {baseUrl, token, info, patients, clients} with the Bundles as JSON
 * text; child answers 'ready'; parent sends 'go'; child answers with the outcome.
 */
interface Job {
  baseUrl: string;
  token: string;
  info: string[];
  patients: string[];
  clients: number;
}

export interface ClientOutcome {
  errors: string[];
  infoSeconds: number;
  seconds: number;
}

interface EntryAnswer {
  entry?: { response?: { status?: string } }[];
  issue?: { diagnostics?: string }[];
}

let job: Job | undefined;

process.on('message', (message: Job | 'go') => {
  if (message !== 'go') {
    job = message;
    process.send!('ready');
    return;
  }
  run(job!).then(
    (outcome) => process.send!(outcome, () => process.exit(0)),
    (err: unknown) => {
      process.send!({ errors: [`client failed: ${String(err)}`], infoSeconds: 0, seconds: 0 }, () => process.exit(1));
    },
  );
});

async function run(j: Job): Promise<ClientOutcome> {
  const errors: string[] = [];
  const post = async (body: string): Promise<void> => {
    const res = await fetch(`${j.baseUrl}/fhir`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${j.token}`, 'Content-Type': 'application/fhir+json' },
      body,
    });
    const answer = (await res.json()) as EntryAnswer;
    if (res.status !== 200) errors.push(`${res.status} ${answer.issue?.[0]?.diagnostics ?? ''}`.slice(0, 300));
    for (const e of answer.entry ?? []) if (!e.response?.status?.startsWith('2')) errors.push(`entry ${e.response?.status}`);
  };
  const started = performance.now();
  // Information bundles (organizations, practitioners) first: patient bundles refer to them.
  for (const b of j.info) await post(b);
  const infoSeconds = (performance.now() - started) / 1000;
  let next = 0;
  await Promise.all(
    Array.from({ length: j.clients }, async () => {
      while (next < j.patients.length) await post(j.patients[next++]);
    }),
  );
  return { errors, infoSeconds, seconds: (performance.now() - started) / 1000 };
}
