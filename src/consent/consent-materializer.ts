import { Injectable } from '@nestjs/common';
import type { Consent, Resource } from '@medplum/fhirtypes';
import type { EntityManager } from 'typeorm';
import { FhirError } from '../common/fhir-error';
import { accessAttributesOf } from '../fhir/storage/access-attributes';
import { ResourceWriteHook } from '../fhir/storage/resource-write-hook';
import { consentPatientId, provisionRows } from './consent-provisions';

/**
 * Keeps table consent_provision in step with the Consent resources, in the transaction that writes
 * (or deletes) each Consent, so the next request on any app node sees the change.
 *
 * Who may write a patient's Consent (docs/consent.md): the organization that authored the Patient.
 * The Consent row's authoring organization is the writer's; a Consent about a Patient authored
 * by another organization (or about one that does not exist) is refused with one 403.
 */
@Injectable()
export class ConsentMaterializer extends ResourceWriteHook {
  handles(resourceType: string): boolean {
    return resourceType === 'Consent';
  }

  async written(tx: EntityManager, _resourceType: string, id: string, resource: Resource | undefined): Promise<void> {
    await tx.query(`DELETE FROM consent_provision WHERE consent_id = $1`, [id]);
    if (!resource) return;
    const consent = resource as Consent;
    const patientId = consentPatientId(consent);
    const [written, patient] = await Promise.all([
      accessAttributesOf(tx, [{ resourceType: 'Consent', id }]),
      patientId ? accessAttributesOf(tx, [{ resourceType: 'Patient', id: patientId }]) : Promise.resolve([]),
    ]);
    const writer = written[0]?.authorOrg;
    if (!patient[0] || !writer || patient[0].authorOrg !== writer) {
      throw FhirError.forbidden('A Consent may be written only by the organization that authored its Patient (Consent.patient)');
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
