import pino, { type Logger } from 'pino';

/** One log line as pino wrote it: its level name, its message and its fields. */
export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/**
 * A real pino logger whose lines are kept in memory, for tests that assert what a module
 * logged. Lifecycle: create per test; nothing to release.
 */
export function captureLogger(level: pino.Level = 'debug'): { logger: Logger; lines: LogLine[]; at(level: string): LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level, formatters: { level: (label) => ({ level: label }) } },
    { write: (chunk: string) => void lines.push(JSON.parse(chunk) as LogLine) },
  );
  return { logger, lines, at: (l) => lines.filter((line) => line.level === l) };
}
