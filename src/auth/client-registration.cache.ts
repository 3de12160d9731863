import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';

/** Channel the `oauth_client_changed` trigger (migration 1732401300000) notifies on commit. */
export const OAUTH_CLIENT_CHANNEL = 'oauth_client_changed';
const RECONNECT_MS = [1000, 2000, 5000, 10000, 30000];
/** Bounded: a flood of distinct client ids cannot grow memory (a full cache starts over). */
const MAX_ENTRIES = 10_000;

/** What every authenticated request needs to know about its client beyond the token's claims. */
export interface ClientStatus {
  disabled: boolean;
  clinicalAccess: boolean;
}

/**
 * The per-request client check (still registered? disabled? clinical access?) without a database
 * round trip: statuses are cached on this node and dropped when a trigger on `oauth_client`
 * NOTIFYs a change (delivered on commit, to every node's listen connection). The node that makes
 * the change drops its entry at once. Fail closed: while the listen connection is down, nothing is
 * cached and every request asks the database; after a reconnect the cache starts empty.
 */
@Injectable()
export class ClientRegistrationCache implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('ClientRegistrationCache');
  private readonly entries = new Map<string, ClientStatus>();
  /** Bumped by every invalidation: a lookup that raced one does not store what it read. */
  private generation = 0;
  private listener?: Client;
  private stopped = false;
  private reconnectAttempt = 0;
  private reconnectTimer?: NodeJS.Timeout;

  constructor(@InjectDataSource() private readonly db: DataSource) {}

  async onModuleInit(): Promise<void> {
    await this.listen();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    const listener = this.listener;
    this.drop();
    await listener?.end().catch(() => undefined);
  }

  /** The client's status, undefined for an unknown client. */
  async status(clientId: string): Promise<ClientStatus | undefined> {
    const cached = this.listener ? this.entries.get(clientId) : undefined;
    if (cached) return cached;
    const generation = this.generation;
    const rows: { disabled: boolean; clinical_access: boolean }[] = await this.db.query(
      `SELECT disabled, clinical_access FROM oauth_client WHERE client_id = $1`,
      [clientId],
    );
    const status = rows[0] ? { disabled: rows[0].disabled, clinicalAccess: rows[0].clinical_access } : undefined;
    // Stored only if no change was announced while we read, and only while changes can be heard.
    if (status && this.listener && generation === this.generation) {
      if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
      this.entries.set(clientId, status);
    }
    return status;
  }

  /** Drops one client's entry (or all): a change was committed. */
  invalidate(clientId?: string): void {
    this.generation++;
    if (clientId === undefined) this.entries.clear();
    else this.entries.delete(clientId);
  }

  /**
   * Resolves when this node hears a change of the client announced (or after `ms`). The node that
   * disables a client waits for it before answering: every node's listen connection has then been
   * sent the notification, so the next request anywhere finds the entry gone.
   */
  heard(clientId: string, ms = 2000): Promise<void> {
    const listener = this.listener;
    if (!listener) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        listener.off('notification', onNotification);
        resolve();
      };
      const onNotification = (msg: { channel: string; payload?: string }) => {
        if (msg.channel === OAUTH_CLIENT_CHANNEL && msg.payload === clientId) done();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      listener.on('notification', onNotification);
    });
  }

  /** Whether statuses are cached now (the listen connection is up). */
  get listening(): boolean {
    return this.listener !== undefined;
  }

  private drop(): void {
    this.listener = undefined;
    this.invalidate();
  }

  private async listen(): Promise<void> {
    const url = (this.db.options as { url?: string }).url;
    const client = new Client({ connectionString: url, application_name: 'fhir-hie-listen-clients' });
    client.on('notification', (msg) => {
      if (msg.channel === OAUTH_CLIENT_CHANNEL) this.invalidate(msg.payload);
    });
    client.on('error', (err) => {
      this.logger.warn(`Client registration listen connection failed: ${err.message}`);
      this.onListenerLost(client);
    });
    client.on('end', () => this.onListenerLost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${OAUTH_CLIENT_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    // Anything read before this point was read without listening: start empty.
    this.invalidate();
    this.listener = client;
    this.reconnectAttempt = 0;
  }

  private onListenerLost(client: Client): void {
    if (this.stopped || client !== this.listener) return;
    // Changes may now go unheard: stop caching at once.
    this.drop();
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = RECONNECT_MS[Math.min(this.reconnectAttempt++, RECONNECT_MS.length - 1)];
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stopped) return;
      this.listen().catch((err: unknown) => {
        this.logger.warn(`Client registration listen reconnect failed: ${err instanceof Error ? err.message : String(err)}`);
        this.scheduleReconnect();
      });
    }, delay);
    this.reconnectTimer.unref();
  }
}
