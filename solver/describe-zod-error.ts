/**
 * The issues of a failed zod parse, from zod 3 or zod 4 (the client messages use zod/v4 for
 * its speed on 20,000-entry listings; the rest still uses zod 3): both carry a path and a message.
 */
export interface ZodIssues {
  readonly issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>;
}

/** The first problem zod found, as `path.to.field: message` (or the message alone at the root). */
export function describeZodError(err: ZodIssues): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid';
  const where = issue.path.map(String).join('.');
  return where ? `${where}: ${issue.message}` : issue.message;
}
