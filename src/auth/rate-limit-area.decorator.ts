import { SetMetadata } from '@nestjs/common';

export const RATE_LIMIT_AREA = 'hie:rate-limit-area';

/**
 * Which per-client budget a controller's routes spend (ClientThrottlerGuard): the token endpoint's
 * routes have their own budget, everything else spends the API's. Metadata, so the guard needs no
 * import of the controllers above it.
 */
export const RateLimitArea = (area: 'token' | 'api') => SetMetadata(RATE_LIMIT_AREA, area);
