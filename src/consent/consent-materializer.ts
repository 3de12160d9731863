import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Consent } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import { WriteEvent, WriteEvents, WriteListener } from '../fhir/pipeline/write-events';
import { AccessAttributesContext, accessAttributesOf } from '../fhir/storage/access-attributes';
import { consentPatientId, provisionRows } from './consent-provisions';

/**
 * Keeps table consent_provision in step with the Consent resources, in the transaction that writes
 * (or deletes) each Consent, so the next request on any app node sees the change: a pre-commit
 * write listener (docs/architecture.md, Write events).
 *
 * Who may write a patient's Consent (docs/consent.md): the Patient's custodian organization. The
 * Consent version's written-by organization is the writer's; a Consent about a Patient in another
 * organization's custody (or about one that does not exist) is refused with one 403.
 */
@Injectable()
export class ConsentMaterializer implements WriteListener, OnModuleInit {
  readonly name = 'consent-provisions';
  readonly phase = 'pre-commit' as const;
  readonly order = 100;
  readonly resourceTypes = ['Consent'];

  constructor(private readonly events: WriteEvents) {}

  onModuleInit(): void {
    this.events.register(this);
  }

  async handle({ tx, id, after, principal }: WriteEvent): Promise<void> {
    await tx.query(`DELETE FROM consent_provision WHERE consent_id = $1`, [id]);
    if (!after) return;
    const consent = after as Consent;
    const patientId = consentPatientId(consent);
    const patient = patientId ? await accessAttributesOf(AccessAttributesContext.CONSENT_MATERIALIZATION, tx, [{ resourceType: 'Patient', id: patientId }]) : [];
    // The version's written-by organization: the writer's.
    const writer = principal.organization;
    if (!patient[0] || !writer || patient[0].custodianOrg !== writer) {
      throw FhirError.forbidden('A Consent may be written only by the custodian organization of its Patient (Consent.patient)');
    }
    const rows = provisionRows(consent, Number(consent.meta?.versionId ?? 1));
    if (!rows.length) return;
    const range = (r: [string | null, string | null]) => `[${r[0] ?? ''},${r[1] ?? ''})`;
    await tx.query(
      `INSERT INTO consent_provision (consent_id, consent_version, provision_path, patient_id, depth, permit, actor_org, purpose, resource_class, security_label, data_ref, period, data_period,
                                      actor_ref, code_system, code)
       SELECT x.consent_id, x.consent_version, x.provision_path, x.patient_id, x.depth, x.permit, x.actor_org, x.purpose, x.resource_class, x.security_label, x.data_ref,
              x.period::tstzrange, x.data_period::tstzrange, x.actor_ref, x.code_system, x.code
         FROM jsonb_to_recordset($1::jsonb) AS x(consent_id text, consent_version int, provision_path text, patient_id text, depth smallint, permit boolean,
              actor_org text, purpose text, resource_class text, security_label text, data_ref text, period text, data_period text,
              actor_ref text, code_system text, code text)`,
      [
        JSON.stringify(
          rows.map((r) => ({
            consent_id: r.consentId,
            consent_version: r.consentVersion,
            provision_path: r.provisionPath,
            patient_id: r.patientId,
            depth: r.depth,
            permit: r.permit,
            actor_org: r.actorOrg,
            purpose: r.purpose,
            resource_class: r.resourceClass,
            security_label: r.securityLabel,
            data_ref: r.dataRef,
            period: range(r.period),
            data_period: range(r.dataPeriod),
            actor_ref: r.actorRef,
            code_system: r.codeSystem,
            code: r.code,
          })),
        ),
      ],
    );
  }
}
