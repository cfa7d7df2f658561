import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { readJsonFile } from './json-file';

/** A case's optional args.json: what both builders are asked for besides the context. */
const CaseArgsSchema = z
  .object({
    target: z.string().min(1).optional(),
    'build-args': z.record(z.string()).optional(),
    /** a foreign platform needs QEMU user emulation registered with binfmt_misc */
    platform: z.string().min(1).optional(),
  })
  .strict();
export type CaseArgs = z.infer<typeof CaseArgsSchema>;

export async function readCaseArgs(caseDir: string): Promise<CaseArgs> {
  const file = path.join(caseDir, 'args.json');
  return existsSync(file) ? readJsonFile(file, CaseArgsSchema, file) : {};
}

/** The same request in `docker build` flags. */
export function dockerBuildFlags(a: CaseArgs): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(a['build-args'] ?? {})) out.push('--build-arg', `${k}=${v}`);
  if (a.target) out.push('--target', a.target);
  if (a.platform) out.push('--platform', a.platform);
  return out;
}

/** The same request in `buildctl build` flags (the dockerfile.v0 frontend's options). */
export function buildctlFlags(a: CaseArgs): string[] {
  const out: string[] = [];
  if (a.target) out.push('--opt', `target=${a.target}`);
  for (const [k, v] of Object.entries(a['build-args'] ?? {})) out.push('--opt', `build-arg:${k}=${v}`);
  if (a.platform) out.push('--opt', `platform=${a.platform}`);
  return out;
}
