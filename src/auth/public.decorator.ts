import { SetMetadata } from '@nestjs/common';

export const PUBLIC_ROUTE = 'hie:public-route';

/** Marks a route that answers without a token; the reason is kept with the route (route inventory test). */
export const Public = (reason: string) => SetMetadata(PUBLIC_ROUTE, reason);
