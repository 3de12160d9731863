import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { Strategy } from 'passport-http-bearer';
import type { Principal } from '../fhir/pipeline/principal';
import { isDatabaseUnavailable } from '../common/database-unavailable';
import { AccessTokenService } from './access-token.service';

export const BREAK_GLASS_HEADER = 'x-break-glass-reason';

/** passport bearer strategy: a verified access token becomes the request's Principal. */
@Injectable()
export class BearerTokenStrategy extends PassportStrategy(Strategy, 'bearer') {
  constructor(private readonly tokens: AccessTokenService) {
    super({ passReqToCallback: true });
  }

  async validate(req: Request, token: string): Promise<Principal | false> {
    try {
      const principal = await this.tokens.verify(token);
      const reason = req.header(BREAK_GLASS_HEADER);
      return reason ? { ...principal, breakGlassReason: reason.slice(0, 500) } : principal;
    } catch (err) {
      // An unreachable database says nothing about the token: report the outage (503), not 401.
      if (isDatabaseUnavailable(err)) throw err;
      return false;
    }
  }
}
