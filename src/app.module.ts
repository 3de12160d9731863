import { Module } from '@nestjs/common';
import { APP_FILTER, APP_INTERCEPTOR, RouterModule } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import { OperationOutcomeFilter } from './common/http/operation-outcome.filter';
import { pinoHttpOptions } from './common/http/logging';
import { RouteTemplateInterceptor } from './common/http/route-template.interceptor';
import { loadAppConfig } from './config/app.config';
import { ConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { AuditModule } from './audit/audit.module';
import { AuditToolsModule } from './audit/audit-tools.module';
import { AuthModule } from './auth/auth.module';
import { ConsentModule } from './consent/consent.module';
import { FhirModule } from './fhir/fhir.module';
import { HealthModule } from './health/health.module';
import { JobsModule } from './jobs/jobs.module';

// The FHIR base path is part of the route table, so it is read when the module is defined.
const config = loadAppConfig();

@Module({
  imports: [
    ConfigModule,
    LoggerModule.forRoot({ pinoHttp: pinoHttpOptions(config) }),
    DatabaseModule,
    JobsModule,
    HealthModule,
    AuditModule,
    AuthModule,
    ConsentModule,
    FhirModule,
    AuditToolsModule,
    RouterModule.register([{ path: config.fhirBasePath, module: FhirModule }]),
  ],
  providers: [
    { provide: APP_FILTER, useClass: OperationOutcomeFilter },
    { provide: APP_INTERCEPTOR, useClass: RouteTemplateInterceptor },
  ],
})
export class AppModule {}
