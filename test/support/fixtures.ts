/** A Patient that satisfies the regional HIE Patient profile (identifier with system+value, name, gender). */
export function hiePatient(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'http://hospital-a.example.org/mrn', value: 'MRN-1' }],
    name: [{ family: 'Müller', given: ['Anna', 'Lena'] }],
    gender: 'female',
    birthDate: '1980-04-01',
    ...extra,
  };
}

export const FHIR_JSON = 'application/fhir+json';

/** The id of a resource a create answered with 201; anything else fails the set-up, saying why. */
export async function createdId(res: { status: number; body: { id?: unknown } }): Promise<string> {
  if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}
