import http from 'node:http';
import https from 'node:https';

/**
 * POSTs rest-hook notifications over pooled keep-alive connections (node:http / node:https): a
 * delivery needs the status only, so the WHATWG fetch machinery (streams, Headers, an AbortSignal
 * and its DOMException per request) is per-notification work it need not do (docs/referrals.md,
 * Delivery). Redirects are not followed: a 3xx is an answer like any other non-2xx.
 */
export class RestHookClient {
  private readonly agents: { http: http.Agent; https: https.Agent };

  constructor(maxSocketsPerEndpoint: number) {
    this.agents = { http: new http.Agent({ keepAlive: true, maxSockets: maxSocketsPerEndpoint }), https: new https.Agent({ keepAlive: true, maxSockets: maxSocketsPerEndpoint }) };
  }

  /**
   * The endpoint's HTTP status, or 0 when it could not be reached or did not answer within
   * `timeoutMs` (connection, request and response headers together). The response body is
   * drained and ignored.
   */
  post(endpoint: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<number> {
    return new Promise((resolve) => {
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        return resolve(0);
      }
      const secure = url.protocol === 'https:';
      if (!secure && url.protocol !== 'http:') return resolve(0);
      let settled = false;
      const done = (status: number): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve(status);
      };
      const send = secure ? https.request : http.request;
      const req = send(url, { method: 'POST', agent: secure ? this.agents.https : this.agents.http, headers: { ...headers, 'Content-Length': String(Buffer.byteLength(body)) } }, (res) => {
        res.resume();
        done(res.statusCode ?? 0);
      });
      const deadline = setTimeout(() => {
        req.destroy();
        done(0);
      }, timeoutMs);
      req.once('error', () => done(0));
      req.end(body);
    });
  }

  /** Closes the pooled connections (shutdown). */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}
