import { z } from 'zod';

/**
 * What a CNI plugin prints on success of ADD (spec 1.0 "Success"; 0.4.0 adds `version` to each
 * address, kept by passthrough). Validated because a plugin is another program's output.
 */
export const cniResultSchema = z
  .object({
    cniVersion: z.string(),
    interfaces: z
      .array(z.object({ name: z.string(), mac: z.string().optional(), sandbox: z.string().optional() }).passthrough())
      .optional(),
    ips: z
      .array(
        z
          .object({
            address: z.string().regex(/^[0-9a-fA-F.:]+\/\d{1,3}$/, 'an address in CIDR notation'),
            gateway: z.string().optional(),
            interface: z.number().int().min(0).optional(),
          })
          .passthrough(),
      )
      .optional(),
    routes: z.array(z.object({ dst: z.string() }).passthrough()).optional(),
    dns: z.object({}).passthrough().optional(),
  })
  .passthrough();

export type CniResult = z.infer<typeof cniResultSchema>;

/** What a plugin prints on stdout when it fails (spec 1.0 "Error"). */
export const cniErrorSchema = z
  .object({
    cniVersion: z.string().optional(),
    code: z.number().int(),
    msg: z.string(),
    details: z.string().optional(),
  })
  .passthrough();

export type CniErrorOutput = z.infer<typeof cniErrorSchema>;

/** Parses a successful ADD's stdout; undefined (with why) when it is not a valid result. */
export function parseCniResult(stdout: string): { result: CniResult } | { problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch (err) {
    return { problem: `its result is not JSON (${(err as Error).message})` };
  }
  const parsed = cniResultSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { problem: `its result is invalid (${issue ? `${issue.path.join('.') || 'result'}: ${issue.message}` : 'invalid'})` };
  }
  return { result: parsed.data };
}

/**
 * The message of a failed plugin: its JSON error's `msg` (and `details`), or, when it printed
 * none, the end of its stderr, or its exit code.
 */
export function describeCniFailure(stdout: string, stderr: string, exit: string): string {
  try {
    const parsed = cniErrorSchema.safeParse(JSON.parse(stdout));
    if (parsed.success) {
      const { msg, details, code } = parsed.data;
      return `${msg}${details ? `: ${details}` : ''} (CNI error code ${code})`;
    }
  } catch {
    // not JSON: fall through to stderr
  }
  const text = (stderr.trim() || stdout.trim()).split('\n').slice(-3).join(' ');
  return text ? `${text} (${exit})` : exit;
}

/** The first IPv4 address of a result, without its prefix length, e.g. for logs. */
export function firstIpv4(result: CniResult): string | undefined {
  const ip = result.ips?.find((i) => /^\d+\.\d+\.\d+\.\d+\//.test(i.address));
  return ip?.address.split('/')[0];
}
