import { Global, Module } from '@nestjs/common';
import { ConfigModule as NestConfigModule } from '@nestjs/config';
import { APP_CONFIG, loadAppConfig } from './app.config';

/** @nestjs/config reads the environment; our zod schema validates it and yields a typed AppConfig. */
@Global()
@Module({
  imports: [
    NestConfigModule.forRoot({
      ignoreEnvFile: true,
      validate: (env) => {
        loadAppConfig(env as NodeJS.ProcessEnv);
        return env;
      },
    }),
  ],
  providers: [{ provide: APP_CONFIG, useFactory: () => loadAppConfig() }],
  exports: [APP_CONFIG],
})
export class ConfigModule {}
