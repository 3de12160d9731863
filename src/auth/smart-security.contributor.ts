import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type { CapabilityStatementRest } from '@medplum/fhirtypes';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { CapabilityContributor, CapabilityStatementService } from '../fhir/capability/capability-statement.service';

/** Declares SMART-on-FHIR security (Backend Services) with the token URL in the CapabilityStatement. */
@Injectable()
export class SmartSecurityContributor implements CapabilityContributor, OnModuleInit {
  constructor(
    private readonly capabilities: CapabilityStatementService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.capabilities.register(this);
  }

  contribute(rest: CapabilityStatementRest): void {
    rest.security = {
      cors: this.config.corsOrigins.length > 0,
      service: [
        {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
          text: 'SMART Backend Services (client_credentials, private_key_jwt or client secret)',
        },
      ],
      extension: [
        {
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: [{ url: 'token', valueUri: this.config.tokenUrl }],
        },
      ],
    };
  }
}
