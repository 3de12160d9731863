import { Module } from '@nestjs/common';
import { APP_FILTER, APP_INTERCEPTOR, RouterModule } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import { OperationOutcomeFilter } from './common/http/operation-outcome.filter';
import { pinoHttpOptions } from './common/http/logging';
import { RefusedRequestAudit } from './common/http/refused-request.audit';
import { RouteTemplateInterceptor } from './common/http/route-template.interceptor';
import { loadAppConfig } from './config/app.config';
import { ConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { AuditModule } from './audit/audit.module';
import { takeRequestAuditFields } from './audit/log-audit.stage';
import { RefusedRequestAuditRecorder } from './audit/refused-request.audit-recorder';
import { AuditToolsModule } from './audit/audit-tools.module';
import { AuthModule } from './auth/auth.module';
import { ConsentModule } from './consent/consent.module';
import { FhirModule } from './fhir/fhir.module';
import { HealthModule } from './health/health.module';
import { IdentityModule } from './identity/identity.module';
import { JobsModule } from './jobs/jobs.module';
import { PublicHealthModule } from './public-health/public-health.module';
import { ReferralsModule } from './referrals/referrals.module';
import { PipelineModule } from './pipeline/pipeline.module';
import { FhirRestModule } from './rest/fhir-rest.module';
import { RestModule } from './rest/rest.module';

// The FHIR base path is part of the route table, so it is read when the module is defined.
const config = loadAppConfig();

@Module({
  imports: [
    ConfigModule,
    LoggerModule.forRoot({ pinoHttp: pinoHttpOptions(config, (requestId) => takeRequestAuditFields(requestId)) }),
    DatabaseModule,
    JobsModule,
    HealthModule,
    AuditModule,
    AuthModule,
    ConsentModule,
    FhirModule,
    PipelineModule,
    AuditToolsModule,
    ReferralsModule,
    PublicHealthModule,
    IdentityModule,
    RestModule,
    RouterModule.register([{ path: config.fhirBasePath, module: FhirRestModule }]),
  ],
  providers: [
    { provide: APP_FILTER, useClass: OperationOutcomeFilter },
    // common/ imports nothing of the domain: the error filter's audit of refused requests is bound here.
    { provide: RefusedRequestAudit, useClass: RefusedRequestAuditRecorder },
    { provide: APP_INTERCEPTOR, useClass: RouteTemplateInterceptor },
  ],
})
export class AppModule {}
