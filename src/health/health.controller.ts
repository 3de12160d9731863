import { Controller, Get, ServiceUnavailableException } from '@nestjs/common';
import { HealthCheck, HealthCheckResult, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { SkipThrottle } from '@nestjs/throttler';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { Public } from '../auth/public.decorator';
import { DATABASE_RETRY_AFTER_SECONDS } from '../common/database-unavailable';
import { FhirError } from '../common/fhir-error';

const PING_TIMEOUT_MS = 2000;

/**
 * Readiness. (Liveness, `GET /healthz`, is answered before the framework: src/app.setup.ts.)
 * Public by design: load balancers probe these without credentials; they reveal no data.
 * Not rate-limited: the counters live in the database, so a limit would make liveness depend on
 * the database (an outage would fail /healthz and get a healthy process restarted), and counting a
 * probe costs the database as much as answering it.
 */
@Controller()
@Public('Health probes for load balancers; reveal no data')
@SkipThrottle()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    @InjectDataSource() private readonly dataSource: DataSource,
  ) {}

  /**
   * Readiness: the database answers and every migration is applied. Not ready is 503 `transient`
   * with Retry-After and the reason; a failing check never becomes a 500.
   */
  @Get('readyz')
  @HealthCheck()
  async readyz() {
    const reachable = await this.ping();
    try {
      return await this.health.check([
        async () => {
          const check = this.indicator.check('database');
          return reachable ? check.up() : check.down({ message: 'the database is unreachable' });
        },
        // Migrations are only worth asking about when the database answers.
        ...(reachable
          ? [
              async () => {
                const check = this.indicator.check('migrations');
                try {
                  return (await this.dataSource.showMigrations()) ? check.down({ message: 'migrations are pending' }) : check.up();
                } catch {
                  return check.down({ message: 'migrations could not be read' });
                }
              },
            ]
          : []),
      ]);
    } catch (err) {
      if (!(err instanceof ServiceUnavailableException)) throw err;
      const { error = {} } = err.getResponse() as HealthCheckResult;
      const reasons = Object.values(error).map((detail) => String(detail?.message ?? 'down'));
      throw FhirError.unavailable(`Not ready: ${reasons.join('; ')}`, DATABASE_RETRY_AFTER_SECONDS);
    }
  }

  private async ping(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS)));
    try {
      return await Promise.race([this.dataSource.query('SELECT 1').then(() => true, () => false), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
