import request from 'supertest';
import { APP_CONFIG, AppConfig } from '../../src/config/app.config';
import { IDENTITY_BATCH_MATCH_QUEUE, IdentityBatchMatchJob } from '../../src/identity/identity-batch-match.job';
import { IDENTITY_MATCH_QUEUE } from '../../src/identity/identity-matching.job';
import { identityPopulation } from '../../src/identity/identity-population';
import { hospitalAgent } from '../support/auth';
import { postTransaction } from '../support/bundles';
import { createTestApp, TestApp } from '../support/test-app';
import { jobsSettled } from '../support/jobs';

// Loads with matching off; the test turns matching after write on at run time for one copy.
process.env.IDENTITY_MATCH_ON_WRITE = 'off';

const RUN = Date.now().toString(36);

type Agent = ReturnType<typeof request.agent>;

/**
 * The batch match is set-based (one blocking statement per page, scored in bulk, the locked match
 * only where something changes) while matching after write runs one job per Patient: both must
 * give the same Persons and the same review pairs. One labelled population with the generator's
 * variation (typos, transposed dates, nicknames, married names, twins, parents and children) is
 * registered once with matching after write, then deleted (matching off, so its rows leave the
 * index), then registered again at other organizations with matching off and linked by the batch
 * match; the two results are compared by the population's record numbers.
 */
describe('identity: the batch match links as matching after write does', () => {
  let t: TestApp;
  const population = identityPopulation({ seed: 2718, persons: 40, twinPairs: 4, parentChildPairs: 4, orgs: 3 });

  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => t?.close());

  /** Registers the population at three organizations of `prefix`, one transaction Bundle each; the record numbers' Patient ids. */
  const register = async (prefix: string): Promise<{ ids: string[]; agents: Agent[] }> => {
    const ids: string[] = [];
    const agents: Agent[] = [];
    for (let org = 0; org < 3; org++) {
      const api = await hospitalAgent(t, `${prefix}-${org}-${RUN}`);
      agents.push(api);
      const mine = population.map((r, i) => ({ r, i })).filter(({ r }) => r.org === org);
      const res = await postTransaction(api, mine.map(({ r }) => ({ resource: r.patient, request: { method: 'POST', url: 'Patient' } })));
      if (res.status !== 200) throw new Error(`bundle: ${res.status}`);
      (res.body.entry as { response: { location: string } }[]).forEach((e, k) => (ids[mine[k].i] = /Patient\/([^/]+)/.exec(e.response.location)![1]));
    }
    return { ids, agents };
  };

  /** The Persons as sets of record numbers, and the review pairs as record-number pairs (sorted). */
  const outcome = async (ids: string[]): Promise<{ persons: number[][]; reviews: string[] }> => {
    const index = new Map(ids.map((id, i) => [id, i]));
    const links: { patient_id: string; person_id: string }[] = await t.db.query(`SELECT patient_id, person_id FROM identity_person_link WHERE patient_id = ANY($1::text[])`, [ids]);
    const byPerson = new Map<string, number[]>();
    for (const l of links) byPerson.set(l.person_id, [...(byPerson.get(l.person_id) ?? []), index.get(l.patient_id)!]);
    const reviews: { patient_id: string; candidate_id: string }[] = await t.db.query(`SELECT patient_id, candidate_id FROM identity_review WHERE patient_id = ANY($1::text[])`, [ids]);
    return {
      persons: [...byPerson.values()].map((g) => g.sort((a, b) => a - b)).sort((a, b) => a[0] - b[0]),
      reviews: reviews.map((r) => [index.get(r.patient_id)!, index.get(r.candidate_id)!].sort((a, b) => a - b).join('-')).sort(),
    };
  };

  it('gives the same Persons and review pairs as one job per write', async () => {
    const config = t.app.get<AppConfig>(APP_CONFIG);
    config.identityMatchOnWrite = true;
    const written = await register('write');
    await jobsSettled(t.db, IDENTITY_MATCH_QUEUE, 1200);
    const afterWrite = await outcome(written.ids);
    config.identityMatchOnWrite = false;
    for (let org = 0; org < 3; org++) {
      const mine = population.map((r, i) => ({ r, i })).filter(({ r }) => r.org === org);
      const res = await postTransaction(written.agents[org], mine.map(({ i }) => ({ request: { method: 'DELETE', url: `Patient/${written.ids[i]}` } })));
      if (res.status !== 200) throw new Error(`delete bundle: ${res.status}`);
    }
    expect(await t.db.query(`SELECT 1 FROM patient_demographics`)).toHaveLength(0);

    const batched = await register('batch');
    await t.db.transaction((tx) => t.app.get(IdentityBatchMatchJob).start(tx, 25));
    await jobsSettled(t.db, IDENTITY_BATCH_MATCH_QUEUE, 1200);
    const afterBatch = await outcome(batched.ids);

    // Not trivially equal: the population links and asks for reviews.
    expect(afterWrite.persons.length).toBeGreaterThan(30);
    expect(afterWrite.reviews.length).toBeGreaterThan(0);
    expect(afterBatch).toEqual(afterWrite);
  });
});
