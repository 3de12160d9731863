import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, Response } from 'express';
import passport from 'passport';
import { databaseUnavailable, isDatabaseUnavailable } from '../common/database-unavailable';
import { FhirError } from '../common/fhir-error';
import { auditRecord } from '../fhir/pipeline/audit-record';
import { RequestContext } from '../common/request-context';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS } from '../fhir/pipeline/principal';
import { PUBLIC_ROUTE } from './public.decorator';
import { BearerTokenStrategy } from './bearer-token.strategy';

/**
 * Global guard (APP_GUARD): every route needs a valid bearer token unless marked @Public.
 * A rejected token is audited like any other denied access.
 */
@Injectable()
export class BearerAuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditStage,
    private readonly strategy: BearerTokenStrategy,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const reason = this.reflector.getAllAndOverride<string | undefined>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    if (reason) return true;
    try {
      return await this.authenticate(context);
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

  /**
   * passport's bearer flow with this app's own strategy instance. Passport's strategy registry is
   * process-wide: by name ('bearer'), a second app in the same process (two nodes in one test) would
   * have every app authenticate through the strategy, services and caches of the one created last.
   */
  private async authenticate(context: ExecutionContext): Promise<boolean> {
    const http = context.switchToHttp();
    const request = http.getRequest<Request>();
    const response = http.getResponse<Response>();
    // passport attaches this request's callbacks (success, fail, error) to the strategy object it
    // is given, so each request gets a fresh object whose prototype is the strategy (as passport
    // does for a named one): concurrent requests must not overwrite each other's callbacks.
    const strategy = Object.create(this.strategy) as BearerTokenStrategy;
    const user = await new Promise<Express.User | undefined>((resolve, reject) =>
      passport.authenticate(strategy, { session: false }, (err: unknown, found: Express.User | false, info: Express.AuthInfo | undefined) => {
        try {
          request.authInfo = info;
          resolve(this.handleRequest(err, found));
        } catch (failure) {
          reject(failure);
        }
      })(request, response, (err?: unknown) => (err ? reject(err) : resolve(undefined))),
    );
    request.user = user;
    return true;
  }

  handleRequest<T>(err: unknown, user: T): T {
    if (isDatabaseUnavailable(err)) throw databaseUnavailable();
    if (err || !user) {
      throw FhirError.unauthorized('A valid bearer token is required (missing, malformed, expired, or not issued by this server)');
    }
    return user;
  }
}
