import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import { REFERRAL_SERVICE_REQUEST_PROFILE, REFERRAL_TASK_PROFILE } from './referral-profiles';

// Test data for the referral unit specs only: one referral from Organization/a to Organization/b
// about Patient/p1 (Task/t1 focusing ServiceRequest/s1); `extra` adds or overrides fields.

export const referralTask = (extra: Partial<Task> = {}): Task => ({
  resourceType: 'Task',
  id: 't1',
  meta: { versionId: '1', profile: [REFERRAL_TASK_PROFILE] },
  status: 'requested',
  intent: 'order',
  focus: { reference: 'ServiceRequest/s1' },
  for: { reference: 'Patient/p1' },
  requester: { reference: 'Organization/a' },
  owner: { reference: 'Organization/b' },
  ...extra,
});

export const referralServiceRequest = (extra: Partial<ServiceRequest> = {}): ServiceRequest => ({
  resourceType: 'ServiceRequest',
  id: 's1',
  meta: { profile: [REFERRAL_SERVICE_REQUEST_PROFILE] },
  status: 'active',
  intent: 'order',
  subject: { reference: 'Patient/p1' },
  requester: { reference: 'Organization/a' },
  performer: [{ reference: 'Organization/b' }],
  ...extra,
});
