/** EX_CONFIG (sysexits.h): the operator must fix the configuration or the environment. */
export const EXIT_CONFIG = 78;

/**
 * A problem found at start that the operator must fix (a locked data directory, a port taken by
 * another program). main.ts prints the message, which says what is wrong and what to do, and exits
 * with `exitCode`.
 */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode = EXIT_CONFIG,
  ) {
    super(message);
  }
}
