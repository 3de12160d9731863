import type { AddressInfo } from 'node:net';
import { MedplumClient } from '@medplum/core';
import type { Bundle, Patient } from '@medplum/fhirtypes';
import { registerTestClient } from '../support/auth';
import { hiePatient } from '../support/fixtures';
import { createTestApp, TestApp } from '../support/test-app';

/**
 * Issue 24 acceptance: two widely used client libraries against the real server on an ephemeral
 * 127.0.0.1 port, as an integration engineer would point them at it.
 */
// fhirclient ships CommonJS with declaration files that need @types/fhir; typed here by what is used.
interface SmartDiscovery {
  fetchWellKnownJson(baseUrl: string): Promise<Record<string, unknown>>;
  getSecurityExtensions(baseUrl: string): Promise<{ tokenUri: string; authorizeUri: string }>;
}
interface FhirClientInstance {
  getFhirVersion(): Promise<string>;
  fhirRequest<T>(uri: string): Promise<T>;
}
type FhirClientClass = new (fhirBaseUrl: string) => FhirClientInstance & { getRequestDefaults(): Promise<RequestInit> };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const smart = require('fhirclient/lib/smart') as SmartDiscovery;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { FhirClient } = require('fhirclient/lib/entry/node') as { FhirClient: FhirClientClass };

const RUN = `clients-${process.pid}-${Date.now().toString(36)}`;

describe('outside clients (issue 24 acceptance)', () => {
  let t: TestApp;
  let base: string;
  beforeAll(async () => {
    t = await createTestApp();
    await new Promise<void>((resolve) => t.http.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(t.http.address() as AddressInfo).port}`;
  });
  afterAll(() => t.close());

  it('MedplumClient: client-credentials login without scope, create, read, paged search, transaction, history, PATCH, delete', async () => {
    const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.cruds'] });
    const medplum = new MedplumClient({ baseUrl: `${base}/`, fhirUrlPath: 'fhir', tokenUrl: `${base}/oauth2/token`, cacheTime: 0 });
    // startClientLogin sends no scope: the registered ones are granted (RFC 6749 §3.3 default).
    await medplum.startClientLogin(client.clientId, client.secret);
    expect(medplum.getAccessToken()).toEqual(expect.any(String));

    const tag = { system: 'urn:test', code: RUN };
    const created = await medplum.createResource<Patient>({ ...(hiePatient() as unknown as Patient), meta: { tag: [tag] } });
    expect(created.meta?.versionId).toBe('1');
    const read = await medplum.readResource('Patient', created.id!);
    expect([read.id, read.name?.[0]?.family]).toEqual([created.id, 'Müller']);

    const transaction = await medplum.executeBatch({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [1, 2, 3, 4].map((n) => ({
        fullUrl: `urn:uuid:00000000-0000-4000-8000-00000000000${n}`,
        resource: { ...(hiePatient({ identifier: [{ system: 'urn:test', value: `${RUN}-${n}` }] }) as unknown as Patient), meta: { tag: [tag] } },
        request: { method: 'POST', url: 'Patient' },
      })),
    } as Bundle);
    expect(transaction.type).toBe('transaction-response');
    expect(transaction.entry!.map((e) => e.response?.status)).toEqual(['201 Created', '201 Created', '201 Created', '201 Created']);

    // Five matches in pages of two: MedplumClient follows the next links.
    const pages: string[][] = [];
    for await (const page of medplum.searchResourcePages('Patient', { _tag: `urn:test|${RUN}`, _count: '2' })) pages.push(page.map((p) => p.id!));
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    expect(new Set(pages.flat()).size).toBe(5);
    expect(pages.flat()).toContain(created.id);
    // One page holding every match carries the exact total.
    expect((await medplum.search('Patient', { _tag: `urn:test|${RUN}`, _count: '10' })).total).toBe(5);

    const patched = await medplum.patchResource('Patient', created.id!, [{ op: 'replace', path: '/gender', value: 'other' }]);
    expect([patched.gender, patched.meta?.versionId]).toEqual(['other', '2']);
    const history = await medplum.readHistory('Patient', created.id!);
    expect(history.entry!.map((e) => [e.resource?.meta?.versionId, e.request?.method])).toEqual([
      ['2', 'PATCH'],
      ['1', 'POST'],
    ]);

    await medplum.deleteResource('Patient', created.id!);
    await expect(medplum.readResource('Patient', created.id!)).rejects.toThrow(/deleted|Gone/i);
    const [{ deleted }] = await t.db.query(`SELECT deleted FROM resource WHERE resource_type = 'Patient' AND id = $1`, [created.id]);
    expect(deleted).toBe(true);
  });

  it("SMART's fhirclient discovers the token endpoint at the FHIR base and reads with the token", async () => {
    const fhirBase = `${base}/fhir`;
    const wellKnown = await smart.fetchWellKnownJson(fhirBase);
    expect(wellKnown).toMatchObject({ token_endpoint: 'http://localhost:8080/oauth2/token', grant_types_supported: ['client_credentials'] });
    // No authorization endpoint (Backend Services only): fhirclient then takes the token URL from the CapabilityStatement.
    expect(await smart.getSecurityExtensions(fhirBase)).toMatchObject({ tokenUri: 'http://localhost:8080/oauth2/token', authorizeUri: '' });

    const client = await registerTestClient(t, { role: 'hospital', scopes: ['system/Patient.rs'] });
    const token = await client.token();
    const fhir = new (class extends FhirClient {
      override async getRequestDefaults(): Promise<RequestInit> {
        return { headers: { Authorization: `Bearer ${token}` } };
      }
    })(fhirBase);
    expect(await fhir.getFhirVersion()).toBe('4.0.1');
    const bundle = await fhir.fhirRequest<Bundle>(`Patient?_tag=urn:test|nothing-${RUN}`);
    expect(bundle).toEqual({ resourceType: 'Bundle', type: 'searchset', total: 0, link: [expect.objectContaining({ relation: 'self' })] });
  });
});
