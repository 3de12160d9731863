import { Global, Module } from '@nestjs/common';
import { WriteEvents } from './write-events';
import { WritePolicies } from './write-policy';

/**
 * The write extension points (docs/architecture.md): write policies and write listeners. Global,
 * so a module (consent, referrals, a test's) registers its own without importing the FHIR module.
 */
@Global()
@Module({ providers: [WritePolicies, WriteEvents], exports: [WritePolicies, WriteEvents] })
export class WriteExtensionsModule {}
