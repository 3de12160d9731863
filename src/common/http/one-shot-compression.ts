import type { Response } from 'express';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

/** Bodies below this go out as they are (the `compression` middleware's threshold in app.setup.ts). */
export const COMPRESSION_THRESHOLD_BYTES = 1024;
/**
 * Above this the body is left to the streaming `compression` middleware, whose zlib work runs on
 * the thread pool: compressing a multi-megabyte page in one go would hold the event loop (≈ 10 ms
 * per MB).
 */
const ONE_SHOT_LIMIT_BYTES = 256 * 1024;
/** The middleware's own settings, so either path sends the same bytes' worth. */
const BROTLI_OPTIONS = { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } };

/**
 * Sends a complete text body, compressed in one call when the client accepts gzip or br.
 *
 * Why not only the middleware: it compresses through a zlib stream per response (hooks on
 * write/end, chunks through the thread pool), which on loopback cost ≈ 0.2 ms of CPU per 18 KB
 * search page against ≈ 0.1 ms for the same gzip done in one synchronous call
 * (docs/performance.md, "Response compression in one call"). Anything this does not handle (a
 * HEAD request, `deflate` only, very large bodies) falls through to the middleware unchanged, and
 * the middleware leaves a body that already has a Content-Encoding alone.
 */
export function sendText(res: Response, type: string, text: string): void {
  res.type(type);
  const req = res.req;
  if (text.length < COMPRESSION_THRESHOLD_BYTES || text.length > ONE_SHOT_LIMIT_BYTES || !req.headers['accept-encoding'] || req.method === 'HEAD') {
    res.send(text);
    return;
  }
  // The client's q-values decide; on a tie the client's own order does (RFC 9110 §12.5.3).
  const encoding = req.acceptsEncodings('gzip', 'br', 'identity');
  if (encoding !== 'gzip' && encoding !== 'br') {
    res.send(text);
    return;
  }
  res.vary('Accept-Encoding');
  res.setHeader('Content-Encoding', encoding);
  res.send(encoding === 'gzip' ? gzipSync(text) : brotliCompressSync(text, BROTLI_OPTIONS));
}
