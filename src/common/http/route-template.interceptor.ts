import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import type { Observable } from 'rxjs';

export type RequestWithRoute = { route?: { path?: string }; routeTemplate?: string };

/**
 * Remembers the matched route (template, or controller.handler) on the request so the access log names
 * the route, never the concrete URL (ids and query values are PHI).
 */
@Injectable()
export class RouteTemplateInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const req = context.switchToHttp().getRequest<RequestWithRoute>();
    // Express 5 under Nest does not expose the matched path reliably; the handler identity is as
    // specific and carries no request data.
    if (req) req.routeTemplate = req.route?.path ?? `${context.getClass().name}.${context.getHandler().name}`;
    return next.handle();
  }
}
