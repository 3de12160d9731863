import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedNotification {
  id: string;
  subscription: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The status the receiver answered (503 while down). */
  answered: number;
  at: number;
}

/**
 * A rest-hook receiver on 127.0.0.1 (a subscriber's endpoint): records every POST, answers 503
 * while `down`, and verifies `X-Signature` as a subscriber would.
 */
export class NotificationReceiver {
  readonly attempts: ReceivedNotification[] = [];
  down = false;
  /** While true, a POST is recorded (answered 0) and never answered: a delivery in flight. */
  hold = false;
  private server?: Server;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.hold) {
          this.attempts.push({ id: String(req.headers['x-notification-id']), subscription: String(req.headers['x-subscription-id']), headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered: 0, at: Date.now() });
          return;
        }
        const answered = this.down ? 503 : 204;
        this.attempts.push({ id: String(req.headers['x-notification-id']), subscription: String(req.headers['x-subscription-id']), headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered, at: Date.now() });
        res.writeHead(answered).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  /** The delivered notifications (answered 2xx), one per notification id: duplicates dropped by id. */
  delivered(subscription?: string): ReceivedNotification[] {
    const seen = new Map<string, ReceivedNotification>();
    for (const a of this.attempts) if (a.answered >= 200 && a.answered < 300 && (!subscription || a.subscription === subscription) && !seen.has(a.id)) seen.set(a.id, a);
    return [...seen.values()];
  }

  async waitFor(predicate: () => boolean, ms = 30_000): Promise<void> {
    const until = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > until) throw new Error('the receiver did not get the expected notifications in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** The subscriber's check of `X-Signature: t=<unix>,v1=<hex>` over `${t}.${body}`. */
export function signatureValid(secret: string, header: string | undefined, body: string): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  const expected = createHmac('sha256', secret).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(m[2], 'hex'));
}
