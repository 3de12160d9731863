import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { OperationDefinition } from '@medplum/fhirtypes';

const PROJECT_ROOT = resolve(__dirname, '..', '..', '..');

/** Canonical namespace of this server's own definitions (profiles, search parameters, operations). */
export const SERVER_CANONICAL_BASE = 'http://hie.example.org/fhir';

/**
 * The OperationDefinition shipped for an operation, `fhir-profiles/operation-{id}.json`: the
 * parameters its input is checked against and what `OperationDefinition/{id}` answers. A missing or
 * mismatched file fails start.
 */
export function shippedOperationDefinition(id: string): OperationDefinition {
  const file = join(PROJECT_ROOT, 'fhir-profiles', `operation-${id}.json`);
  const definition = JSON.parse(readFileSync(file, 'utf8')) as OperationDefinition;
  if (definition.resourceType !== 'OperationDefinition' || definition.id !== id || definition.url !== `${SERVER_CANONICAL_BASE}/OperationDefinition/${id}`) {
    throw new Error(`${file}: an OperationDefinition with id ${id} and url ${SERVER_CANONICAL_BASE}/OperationDefinition/${id} was expected`);
  }
  return definition;
}
