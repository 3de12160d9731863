import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Patients' consent decisions as data the access predicate joins (GUIDE §4, docs/consent.md): one
 * row per provision of an active Consent and per combination of its actor organization, purpose,
 * resource class, security label and data reference (NULL = any), with the provision's period and
 * data period as ranges. Written in the transaction that writes (or deletes) the Consent, so a
 * change is seen by the next request on every app node.
 */
export class ConsentProvisions1732401100000 implements MigrationInterface {
  name = 'ConsentProvisions1732401100000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE consent_provision (
        consent_id      text      NOT NULL,
        consent_version integer   NOT NULL,
        provision_path  text      NOT NULL,
        patient_id      text      NOT NULL,
        depth           smallint  NOT NULL,
        permit          boolean   NOT NULL,
        actor_org       text,
        purpose         text,
        resource_class  text,
        security_label  text,
        data_ref        text,
        period          tstzrange NOT NULL DEFAULT '(,)',
        data_period     tstzrange NOT NULL DEFAULT '(,)'
      )`);
    // The predicate probes by patient (then organization); a Consent's rows are replaced by its id.
    await q.query(`CREATE INDEX consent_provision_patient_idx ON consent_provision (patient_id, actor_org)`);
    await q.query(`CREATE INDEX consent_provision_consent_idx ON consent_provision (consent_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE consent_provision`);
  }
}
