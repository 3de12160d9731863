import './bench-env';
import { NestFactory } from '@nestjs/core';
import { AppModule } from '../src/app.module';

/**
 * bench:subscriptions' delivery node: the application without HTTP, its job workers on, on the
 * bench server's database (DATABASE_URL), as a deployment runs workers apart from the API nodes.
 */
async function main(): Promise<void> {
  const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error', 'warn'] });
  process.send?.('ready');
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
