import { Global, Module } from '@nestjs/common';
import { ConfigModule as NestConfigModule } from '@nestjs/config';
import { FHIR_HTTP_OPTIONS } from '../common/http/fhir-http.options';
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
  providers: [
    { provide: APP_CONFIG, useFactory: () => loadAppConfig() },
    // common/ reads its HTTP settings through its own token, not the config module's.
    { provide: FHIR_HTTP_OPTIONS, useExisting: APP_CONFIG },
  ],
  exports: [APP_CONFIG, FHIR_HTTP_OPTIONS],
})
export class ConfigModule {}
