import { FhirError } from './fhir-error';

/** For unit specs: the FhirError `fn` throws, as [status, issue code, diagnostics, expression]. */
export function refusal(fn: () => unknown): [number, string, string | undefined, string[] | undefined] {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof FhirError)) throw e;
    return [e.status, e.issues[0].code, e.issues[0].diagnostics, e.issues[0].expression];
  }
  throw new Error('expected a FhirError');
}
