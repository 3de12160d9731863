import { notificationId } from './subscription-matching.listener';

describe('notificationId', () => {
  const n = { subscriptionId: 'sub-1', resourceType: 'Task', id: 't1', versionId: '3' };

  it('is a UUID (RFC 9562 version 8, variant 10) derived from (Subscription, type, id, version): the same every time', () => {
    expect(notificationId(n)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(notificationId({ ...n })).toBe(notificationId(n));
  });

  it.each([
    { subscriptionId: 'sub-2' },
    { resourceType: 'ServiceRequest' },
    { id: 't2' },
    { versionId: '4' },
    // The parts are separated, so moving a character from one to the next is another notification.
    { subscriptionId: 'sub-1T', resourceType: 'ask' },
  ])('differs when any part differs (%j)', (change) => {
    expect(notificationId({ ...n, ...change })).not.toBe(notificationId(n));
  });
});
