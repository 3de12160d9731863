import { FhirError } from '../common/fhir-error';
import { notModified } from './interaction.executor';

/** RFC 9110 §13.2.2 evaluation order for read and vread (interaction.executor.ts `notModified`). */
describe('notModified (conditional read)', () => {
  const lastUpdated = '2026-03-04T10:20:30.456Z';
  const lastModified = 'Wed, 04 Mar 2026 10:20:30 GMT';

  it.each([
    ['no conditions', {}, false],
    ['If-None-Match of the version', { ifNoneMatch: 'W/"3"' }, true],
    ['If-None-Match strong form and bare number', { ifNoneMatch: '"3"' }, true],
    ['If-None-Match list with the version', { ifNoneMatch: 'W/"1", W/"3"' }, true],
    ['If-None-Match *', { ifNoneMatch: '*' }, true],
    ['If-None-Match of another version', { ifNoneMatch: 'W/"2"' }, false],
    ['If-Modified-Since the same second (milliseconds dropped)', { ifModifiedSince: lastModified }, true],
    ['If-Modified-Since later', { ifModifiedSince: 'Wed, 04 Mar 2026 11:00:00 GMT' }, true],
    ['If-Modified-Since one second earlier', { ifModifiedSince: 'Wed, 04 Mar 2026 10:20:29 GMT' }, false],
    ['If-Modified-Since not a date: ignored', { ifModifiedSince: 'yesterday' }, false],
    ['If-None-Match decides over a stale If-Modified-Since', { ifNoneMatch: 'W/"3"', ifModifiedSince: 'Wed, 04 Mar 2026 09:00:00 GMT' }, true],
    ['If-None-Match decides over a fresh If-Modified-Since', { ifNoneMatch: 'W/"2"', ifModifiedSince: lastModified }, false],
  ])('%s', (_name, conditions, expected) => {
    expect(notModified(conditions, 3, lastUpdated)).toBe(expected);
  });

  it('refuses a malformed If-None-Match naming the header', () => {
    let caught: unknown;
    try {
      notModified({ ifNoneMatch: 'version-three' }, 3, lastUpdated);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(FhirError);
    const error = caught as FhirError;
    expect([error.status, error.issues[0].code, error.issues[0].expression]).toEqual([400, 'invalid', ['If-None-Match']]);
  });
});
