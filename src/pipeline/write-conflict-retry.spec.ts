import { FhirError } from '../common/fhir-error';
import { isWriteConflict, retryWriteConflicts } from './write-conflict-retry';

/** How pg (through TypeORM's QueryFailedError) reports a failed statement. */
const pgError = (code: string) => Object.assign(new Error('failed'), { code, driverError: { code } });

describe('retryWriteConflicts', () => {
  it('knows deadlocks and serialization failures, and nothing else', () => {
    expect([pgError('40P01'), pgError('40001'), { driverError: { code: '40001' } }].map(isWriteConflict)).toEqual([true, true, true]);
    expect([pgError('23505'), pgError('57014'), new Error('x'), undefined, new FhirError(409, 'conflict', 'x')].map(isWriteConflict)).toEqual([false, false, false, false, false]);
  });

  it('reruns the work after a conflict and answers what the rerun answers', async () => {
    const work = jest.fn<Promise<string>, []>().mockRejectedValueOnce(pgError('40P01')).mockRejectedValueOnce(pgError('40001')).mockResolvedValue('stored');
    await expect(retryWriteConflicts(3, work)).resolves.toBe('stored');
    expect(work).toHaveBeenCalledTimes(3);
  });

  it('runs at most retries + 1 times, then answers 503 transient with Retry-After', async () => {
    const work = jest.fn<Promise<string>, []>().mockRejectedValue(pgError('40P01'));
    const failure = await retryWriteConflicts(2, work).catch((err: unknown) => err);
    expect(work).toHaveBeenCalledTimes(3);
    expect(failure).toBeInstanceOf(FhirError);
    expect((failure as FhirError).status).toBe(503);
    expect((failure as FhirError).headers).toEqual({ 'Retry-After': '1' });
    expect((failure as FhirError).toOperationOutcome().issue).toEqual([
      {
        severity: 'error',
        code: 'transient',
        diagnostics: 'The interaction met concurrent writes and was rolled back 3 time(s); nothing was stored. Send it again',
      },
    ]);
  });

  it('does not rerun work that failed for any other reason', async () => {
    const refused = new FhirError(412, 'multiple-matches', 'two');
    const work = jest.fn<Promise<string>, []>().mockRejectedValue(refused);
    await expect(retryWriteConflicts(3, work)).rejects.toBe(refused);
    expect(work).toHaveBeenCalledTimes(1);
  });
});
