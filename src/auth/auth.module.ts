import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { PassportModule } from '@nestjs/passport';
import { ThrottlerModule } from '@nestjs/throttler';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { FhirModule } from '../fhir/fhir.module';
import { AuthorizationStage } from '../fhir/pipeline/pipeline.stages';
import { AccessTokenService } from './access-token.service';
import { BearerAuthGuard } from './bearer-auth.guard';
import { BearerTokenStrategy } from './bearer-token.strategy';
import { ClientRegistrationCache } from './client-registration.cache';
import { ClientRegistrationRepository } from './client-registration.repository';
import { ClientSecretHasher } from './client-secret.hasher';
import { ClientThrottlerGuard } from './client-throttler.guard';
import { KeyEncryption } from './key-encryption';
import { PostgresThrottlerStorage } from './rate-limit.storage';
import { FirstAdminBootstrap } from './first-admin.bootstrap';
import { SigningKeyStore } from './signing-key.store';
import { SmartAuthorization } from './smart.authorization';
import { SmartSecurityContributor } from './smart-security.contributor';
import { TokenEndpointThrottle } from './token-endpoint.throttle';

/**
 * Who is asking: SMART Backend Services tokens, client registration, the bearer guard (default
 * deny on every route not marked @Public), rate limiting, and the pipeline's authorization stage.
 */
@Global()
@Module({
  imports: [
    PassportModule,
    FhirModule,
    ThrottlerModule.forRootAsync({
      inject: [APP_CONFIG, getDataSourceToken()],
      // Counters in PostgreSQL: every app node enforces the same per-client limit.
      useFactory: (config: AppConfig, db: DataSource) => ({
        throttlers: [{ name: 'default', ttl: 60_000, limit: config.rateLimitPerMinute }],
        storage: new PostgresThrottlerStorage(db),
      }),
    }),
  ],
  providers: [
    AccessTokenService,
    ClientRegistrationRepository,
    ClientRegistrationCache,
    KeyEncryption,
    ClientSecretHasher,
    SigningKeyStore,
    TokenEndpointThrottle,
    BearerTokenStrategy,
    SmartSecurityContributor,
    FirstAdminBootstrap,
    { provide: AuthorizationStage, useClass: SmartAuthorization },
    // Order matters: authenticate first, so the rate limit counts per client.
    { provide: APP_GUARD, useClass: BearerAuthGuard },
    { provide: APP_GUARD, useClass: ClientThrottlerGuard },
  ],
  exports: [AuthorizationStage, ClientRegistrationRepository, AccessTokenService, SigningKeyStore, TokenEndpointThrottle],
})
export class AuthModule {}
