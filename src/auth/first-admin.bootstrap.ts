import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/app.config';
import { ClientConflictError, ClientRegistrationRepository } from './client-registration.repository';

/**
 * An empty server has no client that could register the others. Either the environment names the
 * first admin (HIE_BOOTSTRAP_ADMIN_CLIENT_ID + HIE_BOOTSTRAP_ADMIN_SECRET), or we say how to make one.
 */
@Injectable()
export class FirstAdminBootstrap implements OnApplicationBootstrap {
  private readonly logger = new Logger('Auth');

  constructor(
    private readonly clients: ClientRegistrationRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const admin = this.config.bootstrapAdmin;
    if (admin) {
      try {
        await this.clients.create({
          clientId: admin.clientId,
          name: 'Bootstrap administrator',
          organization: 'hie-operator',
          role: 'admin',
          scopes: ['system/Organization.cruds', 'system/SearchParameter.cruds'],
          purposes: ['HSYSADMIN'],
          secret: admin.secret,
        });
        this.logger.log({ msg: 'created bootstrap admin client', clientId: admin.clientId });
      } catch (err) {
        if (!(err instanceof ClientConflictError)) throw err;
      }
      return;
    }
    if ((await this.clients.count()) === 0) {
      this.logger.warn(
        'No clients are registered. Create the first admin with: npm run -s cli -- client add --id hie-admin --role admin ' +
          '--org hie-operator --scopes "system/Organization.cruds system/SearchParameter.cruds" --purposes HSYSADMIN ' +
          '(it prints the client secret once), or set HIE_BOOTSTRAP_ADMIN_CLIENT_ID and HIE_BOOTSTRAP_ADMIN_SECRET; see README "Authorization"',
      );
    }
  }
}
