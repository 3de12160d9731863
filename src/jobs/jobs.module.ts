import { Global, Module } from '@nestjs/common';
import { JobQueue } from './job-queue';

/** The outbox job queue (pg-boss on the application database), available to every module. */
@Global()
@Module({ providers: [JobQueue], exports: [JobQueue] })
export class JobsModule {}
