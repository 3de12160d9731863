import { Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { StorageSession } from '../storage/storage-session';
import { WriteEvent, WriteEvents, WriteListener, WritePhase } from './write-events';

const event: WriteEvent = {
  principal: { kind: 'client', organization: 'org-a', scopes: [] },
  mode: 'update',
  resourceType: 'Basic',
  id: 'b1',
  before: { versionId: 1, deleted: false, resource: { resourceType: 'Basic', id: 'b1', code: {} } },
  after: { resourceType: 'Basic', id: 'b1', code: {} },
  tx: {} as EntityManager,
  session: {} as StorageSession,
};

describe('WriteEvents: ordered listeners per phase', () => {
  const calls: string[] = [];
  const listener = (name: string, phase: WritePhase, order: number, extra: Partial<WriteListener> = {}): WriteListener => ({
    name,
    phase,
    order,
    handle: async (e) => {
      calls.push(`${name}${e.before?.resource ? '+content' : ''}`);
    },
    ...extra,
  });
  beforeEach(() => {
    calls.length = 0;
  });

  it('runs a phase’s listeners by declared order, then name, whatever the registration order; only their types', async () => {
    const events = new WriteEvents();
    events.register(listener('c', 'pre-commit', 20));
    events.register(listener('b', 'pre-commit', 10));
    events.register(listener('a', 'pre-commit', 10));
    events.register(listener('v', 'validate', 1));
    events.register(listener('task-only', 'pre-commit', 5, { resourceTypes: ['Task'] }));
    expect(events.listening('pre-commit', 'Basic')).toBe(true);
    expect(events.listening('post-commit', 'Basic')).toBe(false);
    await events.fire('pre-commit', event);
    expect(calls).toEqual(['a', 'b', 'c']);
  });

  it('gives the stored content only to listeners that ask for it', async () => {
    const events = new WriteEvents();
    events.register(listener('asks', 'pre-commit', 1, { needsBeforeContent: true }));
    events.register(listener('does-not', 'pre-commit', 2));
    expect(events.wantsBeforeContent('Basic')).toBe(true);
    await events.fire('pre-commit', event);
    expect(calls).toEqual(['asks+content', 'does-not']);
  });

  it('a validate or pre-commit failure propagates; a post-commit failure is logged and the next listener still runs', async () => {
    const events = new WriteEvents();
    const fail = async (): Promise<void> => {
      throw new Error('boom');
    };
    events.register(listener('refuses', 'validate', 1, { handle: fail }));
    await expect(events.fire('validate', event)).rejects.toThrow('boom');
    events.register(listener('notify-fails', 'post-commit', 1, { handle: fail }));
    events.register(listener('notify', 'post-commit', 2));
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    await events.fire('post-commit', event);
    expect(calls).toEqual(['notify']);
    expect(warn).toHaveBeenCalledWith('post-commit listener notify-fails failed for Basic/b1: Error');
    warn.mockRestore();
    expect(() => events.register(listener('notify', 'validate', 3))).toThrow("Write listener 'notify' is registered twice");
  });
});
