import type { Parameters, ServiceRequest, Task } from '@medplum/fhirtypes';
import request from 'supertest';
import { HospitalSend, hospitalSender, registerTestClient } from './auth';
import { FHIR_JSON } from './fixtures';
import type { TestApp } from './test-app';

/** A request as one organization's hospital client (a referral's requester or owner). */
export type ReferralParty = HospitalSend;

/**
 * The organizations as Organization resources (PUT by an HIE admin of the first: `$refer` checks
 * that the performer exists) and a referral party for each, in order.
 */
export async function referralParties(t: TestApp, organizations: string[]): Promise<ReferralParty[]> {
  const parties = [];
  for (const organization of organizations) parties.push(await hospitalSender(t, organization));
  const adminToken = await (await registerTestClient(t, { role: 'admin', organization: organizations[0], scopes: ['system/Organization.cruds'], purposes: ['HSYSADMIN'] })).token();
  for (const org of organizations) {
    const put = await request(t.http).put(`/fhir/Organization/${org}`).set('Authorization', `Bearer ${adminToken}`).set('Content-Type', FHIR_JSON).send({ resourceType: 'Organization', id: org, name: org });
    expect(put.status).toBe(201);
  }
  return parties;
}

/** A cardiology consult ServiceRequest about `patient` from `requester` to `performer` (organization ids), as `$refer` takes it. */
export const referralServiceRequest = (patient: string, requester: string, performer: string, extra: Partial<ServiceRequest> = {}): ServiceRequest => ({
  resourceType: 'ServiceRequest',
  status: 'active',
  intent: 'order',
  priority: 'routine',
  code: { text: 'cardiology consult' },
  subject: { reference: `Patient/${patient}` },
  requester: { reference: `Organization/${requester}` },
  performer: [{ reference: `Organization/${performer}` }],
  reasonCode: [{ text: 'chest pain on exertion' }],
  ...extra,
});

/** `ServiceRequest/$refer` by `who` (expects 200): the stored ServiceRequest and the Task it made. */
export async function referByOperation(who: ReferralParty, serviceRequest: ServiceRequest, note?: string): Promise<{ sr: ServiceRequest; task: Task }> {
  const res = await who('post', '/fhir/ServiceRequest/$refer').send({
    resourceType: 'Parameters',
    parameter: [{ name: 'serviceRequest', resource: serviceRequest }, ...(note ? [{ name: 'note', valueString: note }] : [])],
  });
  expect(res.status).toBe(200);
  const out = (res.body as Parameters).parameter ?? [];
  return { sr: out.find((p) => p.name === 'serviceRequest')?.resource as ServiceRequest, task: out.find((p) => p.name === 'task')?.resource as Task };
}
