import { ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { Request } from 'express';
import { databaseUnavailable, isDatabaseUnavailable } from '../common/database-unavailable';
import { FhirError } from '../common/fhir-error';
import { auditRecord } from '../fhir/pipeline/audit-record';
import { RequestContext } from '../common/request-context';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS } from '../fhir/pipeline/principal';
import { PUBLIC_ROUTE } from './public.decorator';

/**
 * Global guard (APP_GUARD): every route needs a valid bearer token unless marked @Public.
 * A rejected token is audited like any other denied access.
 */
@Injectable()
export class BearerAuthGuard extends AuthGuard('bearer') {
  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditStage,
  ) {
    super();
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const reason = this.reflector.getAllAndOverride<string | undefined>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    if (reason) return true;
    try {
      return (await super.canActivate(context)) as boolean;
    } catch (err) {
      const req = context.switchToHttp().getRequest<Request>();
      const failure = err instanceof FhirError ? err : FhirError.unauthorized('A valid bearer token is required');
      await this.audit.record(
        auditRecord({
          kind: 'authenticate',
          principal: ANONYMOUS,
          address: req.ip,
          path: req.path,
          outcome: 'failure',
          status: failure.status,
          failureCode: failure.issues[0]?.code,
          durationMs: 0,
          requestId: RequestContext.requestId() ?? (req as Request & { id?: string }).id,
        }),
      );
      throw failure;
    }
  }

  override handleRequest<T>(err: unknown, user: T): T {
    if (isDatabaseUnavailable(err)) throw databaseUnavailable();
    if (err || !user) {
      throw FhirError.unauthorized('A valid bearer token is required (missing, malformed, expired, or not issued by this server)');
    }
    return user;
  }
}
