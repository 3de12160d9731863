import { Injectable, OnModuleInit } from '@nestjs/common';
import type { Coding, Meta, Parameters, Resource } from '@medplum/fhirtypes';
import type { StorageSession } from '../storage/storage-session';
import { FhirError } from '../../common/fhir-error';
import { FhirDefinitions } from '../definitions/fhir-definitions';
import type { AccessContext } from '../pipeline/access-context';
import type { InteractionResult, OperationInteraction } from '../pipeline/interaction';
import { ResourceMetaRepository } from '../storage/resource-meta.repository';
import { ResourceRepository, StoredVersion } from '../storage/resource.repository';
import { ResourceValidator } from '../validation/resource.validator';
import { FhirOperation } from './fhir-operation';
import { shippedOperationDefinition } from './operation-definitions';
import type { OperationInput } from './operation-parameters';
import { OperationRegistry } from './operation.registry';

/** The answer of every meta operation: `return` with a Meta (Resource-meta, -meta-add, -meta-delete). */
function metaResult(meta: Meta, stored?: StoredVersion): InteractionResult {
  // Nothing in use on a type or the system: FHIR JSON cannot carry an empty Meta, so no `return`.
  const parameters: Parameters = Object.keys(meta).length
    ? { resourceType: 'Parameters', parameter: [{ name: 'return', valueMeta: meta }] }
    : { resourceType: 'Parameters' };
  return {
    status: 200,
    resource: parameters,
    touched: stored ? [{ reference: `${stored.resourceType}/${stored.id}`, versionId: String(stored.versionId), patients: stored.compartments }] : [],
  };
}

/**
 * `$meta` (Resource-meta): on an instance or a version, that resource's meta; on a type or the
 * system, the profiles, tags and security labels in use on the current resources the client may
 * read (distinct, computed in SQL from the index tables under the AccessContext). Needs the read
 * scope of the type (`*` at system level); a type the client may not read is left out.
 */
@Injectable()
export class MetaOperation extends FhirOperation implements OnModuleInit {
  readonly name = 'meta';
  readonly definition = shippedOperationDefinition('meta');
  readonly levels = ['system', 'type', 'instance'] as const;
  override readonly versionLevel = true;
  override readonly auditAction = 'R' as const;
  readonly affectsState = false;
  readonly roles = ['hospital'] as const;
  override readonly scopes = ['{type}.r'];

  constructor(
    private readonly operations: OperationRegistry,
    private readonly repository: ResourceRepository,
    private readonly meta: ResourceMetaRepository,
  ) {
    super();
  }

  onModuleInit(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession): Promise<InteractionResult> {
    if (i.id === undefined) {
      // Values in use over a type are a search of it: the type's search right (an auditor-only AuditEvent search stays so).
      if (i.resourceType && !ctx.mayRead(i.resourceType)) throw FhirError.forbidden(`$meta on ${i.resourceType} needs the right to search it`);
      const types = i.resourceType ? [i.resourceType] : FhirDefinitions.get().storableTypes.filter((t) => ctx.mayRead(t));
      return metaResult(await this.meta.metaInUse(ctx, types, tx));
    }
    const where = `${i.resourceType}/${i.id}${i.versionId !== undefined ? `/_history/${i.versionId}` : ''}`;
    let version: StoredVersion | undefined;
    if (i.versionId !== undefined) {
      if (!/^[1-9]\d{0,8}$/.test(i.versionId)) throw FhirError.badRequest(`Version id '${i.versionId.slice(0, 20)}' is not a positive integer`);
      version = await this.repository.readVersion(ctx, i.resourceType!, i.id, Number(i.versionId), tx);
    } else {
      version = await this.repository.readCurrent(ctx, i.resourceType!, i.id, tx);
    }
    if (!version) throw FhirError.notFound(`${where} is not known`);
    if (version.deleted || !version.resource) throw new FhirError(410, 'deleted', `${where} was deleted`);
    return metaResult(version.resource.meta ?? {}, version);
  }
}

/**
 * `$meta-add` / `$meta-delete` (Resource-meta-add, -meta-delete) on an instance: add or remove
 * profiles (by URL), tags and security labels (by system and code) of the current version. As R4
 * defines them, they do not create a new version: the current version's meta is changed in place
 * (resource row, its history row, security labels and index rows). Judged like an update (update
 * scope, the write rule: one 403 for missing, hidden or another organization's) and audited as one.
 * A known profile added must be met by the resource (422 otherwise, nothing changed).
 */
abstract class MetaChangeOperation extends FhirOperation {
  abstract override readonly name: 'meta-add' | 'meta-delete';
  readonly levels = ['instance'] as const;
  /** Not on the types the hospital role may not update (AuditEvent: create/read; SearchParameter: admins). */
  override readonly resourceTypes = FhirDefinitions.get().storableTypes.filter((t) => t !== 'AuditEvent' && t !== 'SearchParameter');
  override readonly auditAction = 'U' as const;
  readonly affectsState = true;
  readonly roles = ['hospital'] as const;
  override readonly scopes = ['{type}.u'];

  constructor(
    private readonly operations: OperationRegistry,
    private readonly meta: ResourceMetaRepository,
    private readonly validator: ResourceValidator,
  ) {
    super();
  }

  register(): void {
    this.operations.register(this);
  }

  async execute(ctx: AccessContext, i: OperationInteraction, { tx }: StorageSession, input: OperationInput): Promise<InteractionResult> {
    const change = metaChange(input.all('meta')[0].valueMeta);
    const stored = await this.meta.updateMeta(
      ctx,
      i.resourceType!,
      i.id!,
      (resource) => {
        const updated = { ...resource, meta: this.apply(resource.meta ?? {}, change) } as Resource;
        if (this.name === 'meta-add' && change.profile.some((url) => this.validator.profileRegistry().get(url))) this.validator.validate(updated);
        return updated;
      },
      tx,
    );
    return metaResult(stored.resource!.meta!, stored);
  }

  protected abstract apply(meta: Meta, change: MetaChange): Meta;
}

interface MetaChange {
  profile: string[];
  tag: Coding[];
  security: Coding[];
}

/** The profiles, tags and security labels of a `meta` parameter; nothing else of a Meta may be given. */
function metaChange(value: unknown): MetaChange {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw FhirError.badRequest('meta needs a valueMeta', ['meta']);
  const meta = value as Record<string, unknown>;
  const other = Object.keys(meta).find((k) => !['profile', 'tag', 'security'].includes(k));
  if (other !== undefined) throw FhirError.badRequest(`meta may only carry profile, tag and security, not ${other.slice(0, 40)}`, [`meta.${other.slice(0, 40)}`]);
  const list = (k: string): unknown[] => {
    const v = meta[k] ?? [];
    if (!Array.isArray(v)) throw FhirError.badRequest(`meta.${k} must be an array`, [`meta.${k}`]);
    return v;
  };
  const profile = list('profile').map((p, n) => {
    if (typeof p !== 'string' || !/^\S{1,1024}$/.test(p)) throw FhirError.badRequest(`meta.profile[${n}] must be a canonical URL`, [`meta.profile[${n}]`]);
    return p;
  });
  const codings = (k: 'tag' | 'security'): Coding[] =>
    list(k).map((c, n) => {
      const coding = c as Coding;
      const ok = !!c && typeof c === 'object' && typeof coding.code === 'string' && coding.code.trim() !== '' && (coding.system === undefined || typeof coding.system === 'string');
      if (!ok) throw FhirError.badRequest(`meta.${k}[${n}] must be a Coding with a code`, [`meta.${k}[${n}]`]);
      return coding;
    });
  const change = { profile, tag: codings('tag'), security: codings('security') };
  if (!change.profile.length && !change.tag.length && !change.security.length) throw FhirError.badRequest('meta names no profile, tag or security label', ['meta']);
  return change;
}

/** Tags and security labels are identified by system and code (display and version are ignored). */
function sameCoding(a: Coding, b: Coding): boolean {
  return (a.system ?? '') === (b.system ?? '') && a.code === b.code;
}

function withOut<T>(list: T[] | undefined): T[] | undefined {
  return list && list.length ? list : undefined;
}

function tidy(meta: Meta): Meta {
  const out: Meta = { ...meta, profile: withOut(meta.profile), tag: withOut(meta.tag), security: withOut(meta.security) };
  for (const k of ['profile', 'tag', 'security'] as const) if (out[k] === undefined) delete out[k];
  return out;
}

@Injectable()
export class MetaAddOperation extends MetaChangeOperation implements OnModuleInit {
  readonly name = 'meta-add';
  readonly definition = shippedOperationDefinition('meta-add');

  constructor(operations: OperationRegistry, meta: ResourceMetaRepository, validator: ResourceValidator) {
    super(operations, meta, validator);
  }

  onModuleInit(): void {
    this.register();
  }

  protected apply(meta: Meta, change: MetaChange): Meta {
    const profile = [...(meta.profile ?? [])];
    for (const p of change.profile) if (!profile.includes(p)) profile.push(p);
    const add = (list: Coding[] | undefined, extra: Coding[]): Coding[] => {
      const out = [...(list ?? [])];
      for (const c of extra) if (!out.some((o) => sameCoding(o, c))) out.push(c);
      return out;
    };
    return tidy({ ...meta, profile, tag: add(meta.tag, change.tag), security: add(meta.security, change.security) });
  }
}

@Injectable()
export class MetaDeleteOperation extends MetaChangeOperation implements OnModuleInit {
  readonly name = 'meta-delete';
  readonly definition = shippedOperationDefinition('meta-delete');

  constructor(operations: OperationRegistry, meta: ResourceMetaRepository, validator: ResourceValidator) {
    super(operations, meta, validator);
  }

  onModuleInit(): void {
    this.register();
  }

  protected apply(meta: Meta, change: MetaChange): Meta {
    return tidy({
      ...meta,
      profile: (meta.profile ?? []).filter((p) => !change.profile.includes(p)),
      tag: (meta.tag ?? []).filter((t) => !change.tag.some((c) => sameCoding(t, c))),
      security: (meta.security ?? []).filter((s) => !change.security.some((c) => sameCoding(s, c))),
    });
  }
}
