import { All, Controller, Delete, Get, Param, Patch, Post, Put, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { Public } from '../auth/public.decorator';
import { FhirError } from '../common/fhir-error';
import type { InteractionKind } from '../fhir/pipeline/interaction';
import { FhirPipeline } from '../pipeline/fhir-pipeline.service';
import { callerOf } from '../pipeline/audited-call';
import { FhirResponseWriter } from './fhir-response.writer';
import { InteractionTarget, parseInteraction } from '../fhir/pipeline/interaction.parser';

/**
 * FHIR RESTful API (http.html). Thin: each route names the interaction, the pipeline does the rest.
 * Mounted under the configured base path (default /fhir) by FhirRestModule (app.module.ts).
 */
@Controller()
export class FhirController {
  constructor(
    private readonly pipeline: FhirPipeline,
    private readonly writer: FhirResponseWriter,
  ) {}

  @Get('metadata')
  @Public('The CapabilityStatement tells clients how to authenticate; it holds no patient data')
  metadata(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.run(req, res, 'capabilities');
  }

  // Operations (operations.html, GET or POST) come before the routes whose `:type`/`:id` would match `$name`.
  @All('$:operation')
  operationSystem(@Req() req: Request, @Res() res: Response, @Param('operation') operation: string): Promise<void> {
    return this.run(req, res, 'operation', { operation });
  }

  @All(':type/$:operation')
  operationType(
    @Req() req: Request,
    @Res() res: Response,
    @Param('type') resourceType: string,
    @Param('operation') operation: string,
  ): Promise<void> {
    return this.run(req, res, 'operation', { resourceType, operation });
  }

  @All(':type/:id/$:operation')
  operationInstance(
    @Req() req: Request,
    @Res() res: Response,
    @Param('type') resourceType: string,
    @Param('id') id: string,
    @Param('operation') operation: string,
  ): Promise<void> {
    return this.run(req, res, 'operation', { resourceType, id, operation });
  }

  @All(':type/:id/_history/:vid/$:operation')
  operationVersion(
    @Req() req: Request,
    @Res() res: Response,
    @Param('type') resourceType: string,
    @Param('id') id: string,
    @Param('vid') versionId: string,
    @Param('operation') operation: string,
  ): Promise<void> {
    return this.run(req, res, 'operation', { resourceType, id, versionId, operation });
  }

  @Get('_history')
  historySystem(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.run(req, res, 'history-system');
  }

  @Get(':type/_history')
  historyType(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string): Promise<void> {
    return this.run(req, res, 'history-type', { resourceType });
  }

  @Get(':type/:id/_history')
  historyInstance(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string, @Param('id') id: string): Promise<void> {
    return this.run(req, res, 'history-instance', { resourceType, id });
  }

  @Get(':type/:id/_history/:vid')
  vread(
    @Req() req: Request,
    @Res() res: Response,
    @Param('type') resourceType: string,
    @Param('id') id: string,
    @Param('vid') versionId: string,
  ): Promise<void> {
    return this.run(req, res, 'vread', { resourceType, id, versionId });
  }

  /** System search: `GET /fhir?_type=Patient,Observation&_lastUpdated=gt2024`. */
  @Get()
  searchSystem(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.run(req, res, 'search-system');
  }

  /** batch / transaction Bundle (http.html#transaction). */
  @Post()
  bundle(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.run(req, res, 'batch');
  }

  /** Search by POST with a form body (search.html#Introduction): body and URL parameters combine. */
  @Post(':type/_search')
  searchByPost(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string): Promise<void> {
    return this.run(req, res, 'search-type', { resourceType });
  }

  @Get(':type')
  searchType(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string): Promise<void> {
    return this.run(req, res, 'search-type', { resourceType });
  }

  @Post(':type')
  create(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string): Promise<void> {
    return this.run(req, res, 'create', { resourceType });
  }

  /** Conditional update: `PUT /Patient?identifier=sys|val`. */
  @Put(':type')
  conditionalUpdate(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string): Promise<void> {
    return this.run(req, res, 'update', { resourceType, conditional: true });
  }

  /** Conditional delete: `DELETE /Patient?identifier=sys|val`. */
  @Delete(':type')
  conditionalDelete(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string): Promise<void> {
    return this.run(req, res, 'delete', { resourceType, conditional: true });
  }

  @Get(':type/:id')
  read(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string, @Param('id') id: string): Promise<void> {
    return this.run(req, res, 'read', { resourceType, id });
  }

  /** Compartment search: `GET /fhir/Patient/123/Observation?code=…` (Patient compartment). */
  @Get(':type/:id/:compartmentType')
  searchCompartment(
    @Req() req: Request,
    @Res() res: Response,
    @Param('type') compartmentOf: string,
    @Param('id') id: string,
    @Param('compartmentType') resourceType: string,
  ): Promise<void> {
    return this.run(req, res, 'search-compartment', { resourceType, compartment: { type: compartmentOf, id } });
  }

  @Put(':type/:id')
  update(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string, @Param('id') id: string): Promise<void> {
    return this.run(req, res, 'update', { resourceType, id });
  }

  @Patch(':type/:id')
  patch(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string, @Param('id') id: string): Promise<void> {
    return this.run(req, res, 'patch', { resourceType, id });
  }

  @Delete(':type/:id')
  delete(@Req() req: Request, @Res() res: Response, @Param('type') resourceType: string, @Param('id') id: string): Promise<void> {
    return this.run(req, res, 'delete', { resourceType, id });
  }

  /** Anything else under the FHIR base is a method the API does not define for that path. */
  @All('{*rest}')
  unsupported(@Req() req: Request): never {
    throw new FhirError(405, 'not-supported', `${req.method} is not supported on ${req.path.slice(0, 200)}`, undefined, {
      Allow: 'GET, POST, PUT, PATCH, DELETE',
    });
  }

  private async run(
    req: Request,
    res: Response,
    kind: InteractionKind,
    parts?: InteractionTarget,
  ): Promise<void> {
    if (kind === 'operation' && req.method !== 'GET' && req.method !== 'POST') {
      throw new FhirError(405, 'not-supported', `Operations are invoked with GET or POST, not ${req.method}`, undefined, { Allow: 'GET, POST' });
    }
    const interaction = parseInteraction(req, kind, parts);
    this.writer.validateShaping(interaction);
    const principal = callerOf(req);
    // A client that goes away mid-request cancels its running statement (docs/security.md).
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const result = await this.pipeline.handle(principal, interaction, { signal: gone.signal, address: req.ip });
    this.writer.send(req, res, interaction, result);
  }
}
