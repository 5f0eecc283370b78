/**
 * The logger Fastify gives each request (`request.log`, `reply.log`): pino's child with the
 * request's `reqId`, made only when the request first logs at a level that is on. Until then a
 * request costs no child logger (issue 20: building one per request was a visible share of a
 * submission's CPU at the levels the service runs with); once made, every line is the child's
 * own, so lines, bindings, serializers and redaction are exactly pino's.
 *
 * Contract: a line at a level the parent logs is never lost or changed; a line at a level it
 * does not log is dropped before anything is built. Children with their own level or
 * serializers (a route option paylog does not use) are pino's children from the start.
 */
import type { Bindings, ChildLoggerOptions, Logger } from 'pino';
import type { FastifyBaseLogger } from 'fastify';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

class LazyRequestLogger {
  private made: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
  ) {}

  private real(): Logger {
    return (this.made ??= this.parent.child(this.bindings));
  }

  private log(level: Level, args: unknown[]): void {
    if (!this.parent.isLevelEnabled(level)) return;
    (this.real()[level] as (...a: unknown[]) => void)(...args);
  }

  get level(): string {
    return this.parent.level;
  }

  fatal(...a: unknown[]): void {
    this.log('fatal', a);
  }
  error(...a: unknown[]): void {
    this.log('error', a);
  }
  warn(...a: unknown[]): void {
    this.log('warn', a);
  }
  info(...a: unknown[]): void {
    this.log('info', a);
  }
  debug(...a: unknown[]): void {
    this.log('debug', a);
  }
  trace(...a: unknown[]): void {
    this.log('trace', a);
  }
  silent(): void {}

  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.real().child(bindings, options);
  }
}

/** Fastify's `childLoggerFactory`: the request logger above (pino's child when options ask for more). */
export function requestLoggerFactory(logger: FastifyBaseLogger, bindings: Bindings, opts: ChildLoggerOptions): FastifyBaseLogger {
  const parent = logger as unknown as Logger;
  if (opts.level !== undefined || opts.serializers !== undefined) return parent.child(bindings, opts) as unknown as FastifyBaseLogger;
  return new LazyRequestLogger(parent, bindings) as unknown as FastifyBaseLogger;
}
