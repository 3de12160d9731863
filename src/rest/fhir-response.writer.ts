import { Injectable } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Binary, Resource } from '@medplum/fhirtypes';
import { FhirError } from '../common/fhir-error';
import { binaryRepresentation, sendBinaryContent } from '../common/http/binary-body';
import { sendFhirBody } from '../common/http/fhir-format';
import type { Interaction, InteractionResult } from '../fhir/pipeline/interaction';
import { firstValue } from '../fhir/pipeline/query-params';
import { parseElements, parseSummary, subsetResource } from '../fhir/response/resource-subsetting';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

/** Turns an InteractionResult into the HTTP response: headers, Prefer, _summary/_elements, _pretty. */
@Injectable()
export class FhirResponseWriter {
  /** Parses response-shaping parameters up front so a bad value fails before any data access. */
  validateShaping(interaction: Interaction): void {
    if (interaction.kind === 'read' || interaction.kind === 'vread') {
      parseSummary(firstValue(interaction.query, '_summary'), false);
      parseElements(firstValue(interaction.query, '_elements'));
    }
  }

  send(req: Request, res: Response, interaction: Interaction, result: InteractionResult): void {
    res.status(result.status);
    for (const [k, v] of Object.entries(result.headers ?? {})) res.setHeader(k, v);
    if (result.versionId) res.setHeader('ETag', `W/"${result.versionId}"`);
    if (result.lastUpdated) res.setHeader('Last-Modified', new Date(result.lastUpdated).toUTCString());
    if (result.location && result.status === 201) res.setHeader('Location', result.location);

    if (result.status === 200 && result.resource?.resourceType === 'Binary' && (interaction.kind === 'read' || interaction.kind === 'vread')) {
      // http.html#binary: the content itself when the client asks for its type.
      const binary = result.resource as Binary;
      const how = binaryRepresentation(req.headers.accept, req.query._format, binary.contentType);
      if (how === 'none') {
        throw new FhirError(406, 'not-supported', `None of the accepted media types is this Binary's (${binary.contentType.slice(0, 100)}) or a FHIR format`);
      }
      if (how === 'native') return sendBinaryContent(res, binary);
    }
    let body: Resource | undefined = result.resource;
    const isWrite = interaction.kind === 'create' || interaction.kind === 'update' || interaction.kind === 'patch';
    if (isWrite && interaction.preferReturn === 'minimal') body = undefined;
    if (isWrite && interaction.preferReturn === 'OperationOutcome') {
      body = {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'information', code: 'informational', diagnostics: `${interaction.kind} succeeded` }],
      };
    }
    if (body && (interaction.kind === 'read' || interaction.kind === 'vread')) {
      body = subsetResource(
        body,
        parseSummary(firstValue(interaction.query, '_summary'), false),
        parseElements(firstValue(interaction.query, '_elements')),
      );
    }
    if (!body) {
      res.end();
      return;
    }
    // JSON or XML as negotiated by FhirHttpMiddleware.
    sendFhirBody(res, body, firstValue(interaction.query, '_pretty') === 'true');
  }
}
