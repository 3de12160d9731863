import { AsyncLocalStorage } from 'node:async_hooks';

/** Per-request values that every stage may need (request id for errors and audit). Never PHI. */
export interface RequestContextValues {
  requestId: string;
  /** Set once an audit record names this request, so the error filter audits only what nobody did. */
  audited?: boolean;
}

const storage = new AsyncLocalStorage<RequestContextValues>();

export const RequestContext = {
  run<T>(values: RequestContextValues, fn: () => T): T {
    return storage.run(values, fn);
  },
  current(): RequestContextValues | undefined {
    return storage.getStore();
  },
  requestId(): string | undefined {
    return storage.getStore()?.requestId;
  },
  markAudited(): void {
    const store = storage.getStore();
    if (store) store.audited = true;
  },
  wasAudited(): boolean {
    return storage.getStore()?.audited === true;
  },
};
