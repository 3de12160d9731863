import { Body, Controller, Get, HttpCode, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { FhirError } from '../common/fhir-error';
import { FhirPipeline } from '../pipeline/fhir-pipeline.service';
import { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { AuditedCall, callerOf } from '../pipeline/audited-call';
import { ClientConflictError, ClientRegistrationRepository } from '../auth/client-registration.repository';
import { validateRegistration } from '../auth/client-registration.input';

/** Client registration for HIE admins (`admin` role only). Answers JSON; errors are OperationOutcomes. */
@Controller('admin/clients')
export class AdminClientsController {
  constructor(
    private readonly clients: ClientRegistrationRepository,
    private readonly audit: AuditStage,
    private readonly pipeline: FhirPipeline,
  ) {}

  @Post()
  create(@Req() req: Request, @Body() body: Record<string, unknown>) {
    return this.audited(req, 'client-register', 201, async () => {
      const input = validateRegistration(body ?? {});
      await this.assertOrganizationExists(req, input.organization);
      try {
        const { client, secret } = await this.clients.create(input);
        return { ...client, ...(secret ? { clientSecret: secret } : {}) };
      } catch (err) {
        if (err instanceof ClientConflictError) throw new FhirError(409, 'duplicate', `Client ${err.clientId} already exists`);
        throw err;
      }
    });
  }

  @Get()
  list(@Req() req: Request) {
    return this.audited(req, 'client-list', 200, () => this.clients.list());
  }

  @Get(':clientId')
  get(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-read', 200, async () => {
      const client = await this.clients.find(clientId);
      if (!client) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      const { secretHash: _hidden, ...visible } = client;
      return visible;
    });
  }

  @Post(':clientId/disable')
  @HttpCode(200)
  disable(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-disable', 200, async () => {
      if (!(await this.clients.setDisabled(clientId, true))) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      return { clientId, disabled: true };
    });
  }

  @Post(':clientId/enable')
  @HttpCode(200)
  enable(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-enable', 200, async () => {
      if (!(await this.clients.setDisabled(clientId, false))) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      return { clientId, disabled: false };
    });
  }

  @Post(':clientId/rotate-secret')
  @HttpCode(200)
  rotateSecret(@Req() req: Request, @Param('clientId') clientId: string) {
    return this.audited(req, 'client-rotate-secret', 200, async () => {
      const secret = await this.clients.rotateSecret(clientId);
      if (!secret) throw FhirError.notFound(`No client ${clientId.slice(0, 64)}`);
      return { clientId, clientSecret: secret };
    });
  }

  /** A client belongs to an Organization resource: read through the pipeline, as the admin. */
  private async assertOrganizationExists(req: Request, id: string): Promise<void> {
    try {
      await this.pipeline.handle(callerOf(req), { kind: 'read', resourceType: 'Organization', id, query: {}, path: `/Organization/${id}` });
    } catch (err) {
      if (err instanceof FhirError && (err.status === 404 || err.status === 410)) {
        throw new FhirError(422, 'not-found', `organization: there is no Organization/${id}; create it first (PUT /fhir/Organization/${id})`, ['organization']);
      }
      throw err;
    }
  }

  /** Admin role only (default deny); every call, allowed or denied, goes to the audit stage. */
  private async audited<T>(req: Request, operation: string, status: number, work: () => Promise<T>): Promise<T> {
    const call = new AuditedCall(this.audit, req, { kind: 'admin', subtype: operation, accessBasis: ['policy: admin role'] });
    try {
      if (call.principal.role !== 'admin') throw FhirError.forbidden('Client registration needs the admin role');
      const result = await work();
      const clientId = (result as { clientId?: unknown } | undefined)?.clientId;
      // The registration touched is named by id; it is no patient's data.
      await call.succeeded(status, typeof clientId === 'string' ? [{ reference: `client/${clientId}`, patients: [] }] : []);
      return result;
    } catch (err) {
      await call.failed(err);
      throw err;
    }
  }
}
