import { Injectable, Module, OnModuleInit } from '@nestjs/common';
import { WriteEvents } from '../../src/fhir/pipeline/write-events';

/**
 * Fails the next `armed` writes of `resourceTypes` with a serialization failure (40001) at
 * pre-commit, as PostgreSQL rolls back a write that met a concurrent one: the pipeline reruns the
 * whole interaction. `fired` counts the failures injected.
 */
export function writeConflictOnce(resourceTypes: string[]): { module: new () => unknown; control: { armed: number; fired: number } } {
  const control = { armed: 0, fired: 0 };
  @Injectable()
  class WriteConflictOnce implements OnModuleInit {
    constructor(private readonly events: WriteEvents) {}
    onModuleInit(): void {
      this.events.register({
        name: 'test-write-conflict-once',
        phase: 'pre-commit',
        order: 900,
        resourceTypes,
        handle: async () => {
          if (control.armed <= 0) return;
          control.armed--;
          control.fired++;
          throw Object.assign(new Error('could not serialize access (test)'), { code: '40001' });
        },
      });
    }
  }
  @Module({ providers: [WriteConflictOnce] })
  class WriteConflictOnceModule {}
  return { module: WriteConflictOnceModule, control };
}
