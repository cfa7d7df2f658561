import type { z } from 'zod';

/** The first problem zod found, as `path.to.field: message` (or the message alone at the root). */
export function describeZodError(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid';
  const where = issue.path.join('.');
  return where ? `${where}: ${issue.message}` : issue.message;
}
