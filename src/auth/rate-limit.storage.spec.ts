import { rateLimitLeaseSize, slidingWindowRoom } from './rate-limit.storage';

describe('sliding-window room', () => {
  it.each([
    // limit, recent (last 10 buckets), wide (last 11), room
    [1200, 0, 0, 1200],
    [1200, 1199, 1199, 1],
    [1200, 1200, 1200, 0],
    // The bucket just out of `recent` still counts in `wide`: at most 1.1 x the limit in any 60 s.
    [1200, 0, 1200, 120],
    [1200, 0, 1320, 0],
    [1200, 100, 1300, 20],
    // Below 10 a minute the tolerance rounds to none.
    [5, 0, 5, 0],
    [5, 0, 4, 1],
    [3, 3, 3, 0],
    // Never negative, whatever was counted (leases, concurrent nodes).
    [10, 12, 12, 0],
  ])('limit %i, %i recent, %i wide: room for %i', (limit, recent, wide, room) => {
    expect(slidingWindowRoom(limit, recent, wide)).toBe(room);
  });

  it('leases 1/50 of the limit, between 1 and 100', () => {
    expect([rateLimitLeaseSize(5), rateLimitLeaseSize(99), rateLimitLeaseSize(100), rateLimitLeaseSize(1200), rateLimitLeaseSize(100_000)]).toEqual([1, 1, 2, 24, 100]);
  });
});
