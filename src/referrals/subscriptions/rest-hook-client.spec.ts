import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RestHookClient } from './rest-hook-client';

/** The rest-hook POST on real loopback servers: the status, the exact body and headers, no redirects, the deadline. */
describe('RestHookClient', () => {
  const client = new RestHookClient(2);
  const servers: http.Server[] = [];
  const serve = async (handler: http.RequestListener): Promise<string> => {
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  };

  afterAll(async () => {
    client.close();
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((resolve) => s.close(resolve));
    }
  });

  it('sends the exact body and headers and answers the status; the connection is reused', async () => {
    const seen: { body: string; headers: http.IncomingHttpHeaders; socket: unknown }[] = [];
    const url = await serve((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers, socket: req.socket });
        res.writeHead(204).end();
      });
    });
    const body = '{"resourceType":"Task","id":"é"}';
    expect(await client.post(url, { 'X-Notification-Id': 'n-1', 'Content-Type': 'application/fhir+json' }, body, 2_000)).toBe(204);
    expect(await client.post(url, { 'X-Notification-Id': 'n-2' }, '', 2_000)).toBe(204);
    expect(seen.map((s) => [s.body, s.headers['x-notification-id'], s.headers['content-length'], s.headers['content-type']])).toEqual([
      [body, 'n-1', String(Buffer.byteLength(body)), 'application/fhir+json'],
      ['', 'n-2', '0', undefined],
    ]);
    expect(seen[1].socket).toBe(seen[0].socket);
  });

  it('does not follow a redirect: a 3xx is the answer', async () => {
    let followed = 0;
    const target = await serve((_req, res) => {
      followed++;
      res.writeHead(204).end();
    });
    const url = await serve((_req, res) => res.writeHead(302, { Location: target }).end('moved'));
    expect(await client.post(url, {}, '{}', 2_000)).toBe(302);
    expect(followed).toBe(0);
  });

  it('answers 0 for an endpoint that does not answer within the deadline, one that refuses the connection, and one that is not http(s)', async () => {
    const silent = await serve(() => undefined);
    const started = Date.now();
    expect(await client.post(silent, {}, '{}', 300)).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(2_000);
    const closed = await serve(() => undefined);
    const closedServer = servers[servers.length - 1];
    await new Promise((resolve) => closedServer.close(resolve));
    expect(await client.post(closed, {}, '{}', 2_000)).toBe(0);
    expect(await client.post('ftp://127.0.0.1/hook', {}, '{}', 2_000)).toBe(0);
  });
});
