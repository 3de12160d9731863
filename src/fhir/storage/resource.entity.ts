import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * Mapping of the storage tables for TypeORM (schema documentation, migrations tooling).
 * Queries are written by ResourceRepository in SQL; the schema itself comes only from migrations/.
 */
@Entity({ name: 'resource' })
export class ResourceEntity {
  @PrimaryColumn({ name: 'resource_type', type: 'text' }) resourceType!: string;
  @PrimaryColumn({ type: 'text' }) id!: string;
  @Column({ name: 'version_id', type: 'integer' }) versionId!: number;
  @Column({ name: 'last_updated', type: 'timestamptz' }) lastUpdated!: Date;
  @Column({ type: 'boolean', default: false }) deleted!: boolean;
  /** Written-by: the organization that wrote the current version. */
  @Column({ name: 'author_org', type: 'text', nullable: true }) authorOrg!: string | null;
  /** The custodian organization: set on create, changed only by $transfer-custodian. */
  @Column({ name: 'custodian_org', type: 'text', nullable: true }) custodianOrg!: string | null;
  @Column({ type: 'text', array: true, default: () => "'{}'" }) compartments!: string[];
  @Column({ name: 'security_labels', type: 'text', array: true, default: () => "'{}'" }) securityLabels!: string[];
  @Column({ type: 'jsonb', nullable: true }) content!: Record<string, unknown> | null;
}

@Entity({ name: 'resource_history' })
export class ResourceHistoryEntity {
  @Column({ type: 'bigint', generated: 'increment' }) seq!: string;
  @PrimaryColumn({ name: 'resource_type', type: 'text' }) resourceType!: string;
  @PrimaryColumn({ type: 'text' }) id!: string;
  @PrimaryColumn({ name: 'version_id', type: 'integer' }) versionId!: number;
  @Column({ name: 'last_updated', type: 'timestamptz' }) lastUpdated!: Date;
  @Column({ type: 'boolean', default: false }) deleted!: boolean;
  @Column({ type: 'text' }) method!: string;
  @Column({ name: 'author_org', type: 'text', nullable: true }) authorOrg!: string | null;
  @Column({ name: 'custodian_org', type: 'text', nullable: true }) custodianOrg!: string | null;
  @Column({ type: 'jsonb', nullable: true }) content!: Record<string, unknown> | null;
}
