import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Logger } from '@nestjs/common';
import { auditRecord } from '../fhir/pipeline/audit-record';
import type { AuditStage } from '../fhir/pipeline/pipeline.stages';
import { ANONYMOUS } from '../fhir/pipeline/principal';
import { FhirError } from '../common/fhir-error';

/**
 * Requests Node cannot parse never reach the app: without a handler Node answers a header section
 * over maxHeaderSize with a bare 431 and nothing is audited. This answers with an OperationOutcome
 * and audits the refusal (anonymous: no credentials were read); other parse errors keep Node's
 * plain 400 / 408 and are not audited (connection noise, no request to speak of).
 */
export function handleClientErrors(server: Server, audit: AuditStage, maxHeaderBytes: number): void {
  const logger = new Logger('HttpParser');
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    if (err.code !== 'HPE_HEADER_OVERFLOW') {
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
      return;
    }
    const requestId = randomUUID();
    const error = new FhirError(431, 'too-long', `The request's URL and headers are longer than ${maxHeaderBytes} bytes`);
    const body = JSON.stringify(error.toOperationOutcome());
    const respond = (): void => {
      if (!socket.writable) return;
      socket.end(
        `HTTP/1.1 431 ${STATUS_CODES[431]}\r\nContent-Type: application/fhir+json; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
      );
    };
    audit
      .record(
        auditRecord({
          kind: 'request',
          subtype: 'unparsed',
          requestId,
          principal: ANONYMOUS,
          address: (socket as Socket).remoteAddress,
          outcome: 'failure',
          status: 431,
          failureCode: 'too-long',
          durationMs: 0,
        }),
      )
      .catch(() => logger.error({ msg: 'audit of a refused request failed', requestId }))
      .finally(respond);
  });
}
