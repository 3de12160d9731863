import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Parameters, ParametersParameter } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import type { AccessContext } from '../fhir/pipeline/access-context';
import type { StorageSession } from '../fhir/storage/storage-session';
import type { InteractionResult, OperationInteraction } from '../fhir/pipeline/interaction';
import { FhirOperation } from '../fhir/operations/fhir-operation';
import { shippedOperationDefinition } from '../fhir/operations/operation-definitions';
import type { OperationInput } from '../fhir/operations/operation-parameters';
import { OperationRegistry } from '../fhir/operations/operation.registry';
import { AuditTrailRepository } from './audit-trail.repository';

const SEQ_RE = /^[1-9]\d{0,17}$/;

/**
 * `$verify-chain` (auditors): recomputes the audit trail's hash chain over the whole log or the
 * sequence range [`from`, `to`] and answers a Parameters with `verified`, `checked`, and for a
 * broken chain the first record that does not hold: `seq`, `id` (when it still exists) and
 * `problem` (modified, missing, inserted, relinked, head-mismatch). Read-only, own connection.
 */
@Injectable()
export class VerifyChainOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'verify-chain';
  readonly definition = shippedOperationDefinition('verify-chain');
  readonly levels = ['system', 'type'] as const;
  override readonly resourceTypes = ['AuditEvent'];
  readonly affectsState = false;
  readonly roles = ['auditor'] as const;
  override readonly transaction = 'own' as const;

  constructor(
    private readonly operations: OperationRegistry,
    private readonly trail: AuditTrailRepository,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(_ctx: AccessContext, i: OperationInteraction, _session: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const from = seqParam(input, 'from');
    const to = seqParam(input, 'to');
    if (from && to && BigInt(from) > BigInt(to)) throw FhirError.badRequest('from must not be after to', ['from']);
    const result = await this.trail.verify(from, to);
    const parameter: ParametersParameter[] = [
      { name: 'verified', valueBoolean: !result.broken },
      { name: 'from', valueString: result.from },
      { name: 'to', valueString: result.to },
      { name: 'checked', valueInteger: result.checked },
    ];
    if (result.broken) {
      parameter.push({
        name: 'firstBroken',
        part: [
          { name: 'seq', valueString: result.broken.seq },
          ...(result.broken.id ? [{ name: 'id', valueString: result.broken.id }, { name: 'reference', valueReference: { reference: `AuditEvent/${result.broken.id}` } }] : []),
          { name: 'problem', valueCode: result.broken.problem },
        ],
      });
    }
    return { status: 200, resource: { resourceType: 'Parameters', parameter } as Parameters };
  }
}

/** An audit sequence number: up to 18 digits, so a string parameter (beyond a FHIR integer's range). */
function seqParam(input: OperationInput, name: string): string | undefined {
  const v = input.text(name);
  if (v !== undefined && !SEQ_RE.test(v)) throw FhirError.badRequest(`${name} must be one audit sequence number (a positive integer)`, [name]);
  return v;
}
