import * as os from 'node:os';
import { z } from 'zod';
import defaultProfileJson from './seccomp-default.json';

/** runc's `linux.seccomp` (OCI runtime spec): the filter one container runs under. */
export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures: string[];
  syscalls: OciSyscallRule[];
}

export interface OciSyscallRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[];
}

const filterSchema = z
  .object({
    caps: z.array(z.string()),
    arches: z.array(z.string()),
    minKernel: z.string().regex(/^\d+\.\d+$/),
  })
  .partial()
  .strict();

const ruleSchema = z
  .object({
    names: z.array(z.string().min(1)).min(1),
    action: z.string().min(1),
    errnoRet: z.number().int().min(0).optional(),
    args: z
      .array(z.object({ index: z.number().int().min(0).max(5), value: z.number().int().min(0), valueTwo: z.number().int().min(0).optional(), op: z.string() }).strict())
      .optional(),
    includes: filterSchema.optional(),
    excludes: filterSchema.optional(),
    comment: z.string().optional(),
  })
  .strict();

/** The profile format of Docker's default.json (archMap, rules conditional on arch, caps, kernel). */
const profileSchema = z
  .object({
    comment: z.string().optional(),
    defaultAction: z.string().min(1),
    defaultErrnoRet: z.number().int().min(0).optional(),
    archMap: z.array(z.object({ architecture: z.string(), subArchitectures: z.array(z.string()) }).strict()),
    syscalls: z.array(ruleSchema),
  })
  .strict();

export type SeccompProfile = z.infer<typeof profileSchema>;

/** Docker's default profile (seccomp-default.json), checked once at load. */
export const DEFAULT_SECCOMP_PROFILE: SeccompProfile = profileSchema.parse(defaultProfileJson);

/** What the filter of one container depends on besides the profile. */
export interface SeccompTarget {
  /** Docker's (Go's) name of the architecture: amd64, arm64, arm, x86, ppc64le, s390x, riscv64, … */
  arch: string;
  /** the container's bounding capabilities: rules for a capability apply only when it has it */
  capabilities: readonly string[];
  /** the running kernel, for rules that need one at least this new */
  kernel: { major: number; minor: number };
}

/**
 * Turns a Docker-format profile into the runc filter for one container, as Docker does: the
 * host's architecture with its sub-architectures (so 32-bit binaries are filtered too), and
 * only the rules whose includes hold and whose excludes do not. Without CAP_SYS_ADMIN, for
 * example, `clone` is allowed only without namespace flags, `clone3` fails with ENOSYS (so
 * libc falls back to the filtered `clone`), and mount, unshare, setns and keyctl-like calls
 * fall to the default: EPERM. Pure.
 */
export function seccompForContainer(profile: SeccompProfile, target: SeccompTarget): OciSeccomp {
  const native = profile.archMap.find((a) => a.architecture === SECCOMP_ARCH[target.arch]);
  const syscalls: OciSyscallRule[] = [];
  for (const rule of profile.syscalls) {
    const ex = rule.excludes;
    if (ex) {
      if (ex.arches?.includes(target.arch)) continue;
      if (ex.caps?.some((c) => target.capabilities.includes(c))) continue;
      if (ex.minKernel !== undefined && kernelAtLeast(target.kernel, ex.minKernel)) continue;
    }
    const inc = rule.includes;
    if (inc) {
      if (inc.arches && !inc.arches.includes(target.arch)) continue;
      if (inc.caps && !inc.caps.every((c) => target.capabilities.includes(c))) continue;
      if (inc.minKernel !== undefined && !kernelAtLeast(target.kernel, inc.minKernel)) continue;
    }
    const out: OciSyscallRule = { names: [...rule.names], action: rule.action };
    if (rule.errnoRet !== undefined) out.errnoRet = rule.errnoRet;
    if (rule.args) out.args = rule.args.map((a) => ({ ...a }));
    syscalls.push(out);
  }
  const seccomp: OciSeccomp = {
    defaultAction: profile.defaultAction,
    architectures: native ? [native.architecture, ...native.subArchitectures] : [],
    syscalls,
  };
  if (profile.defaultErrnoRet !== undefined) seccomp.defaultErrnoRet = profile.defaultErrnoRet;
  return seccomp;
}

/** The target of a container on this host: its architecture and kernel. */
export function hostSeccompTarget(capabilities: readonly string[]): SeccompTarget {
  return { arch: dockerArch(process.arch, os.endianness()), capabilities, kernel: parseKernelRelease(os.release()) };
}

/** Node's `process.arch` as Docker's profile names it (Go's GOARCH through libseccomp). */
export function dockerArch(nodeArch: string, endianness: 'BE' | 'LE'): string {
  switch (nodeArch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return 'x86';
    case 'ppc64':
      return endianness === 'LE' ? 'ppc64le' : 'ppc64';
    case 'mipsel':
      return 'mipsle';
    default:
      // arm, arm64, s390, s390x, riscv64, loong64, mips, ppc: the same word
      return nodeArch;
  }
}

/** `6.1.0-18-amd64` → 6.1; what cannot be read counts as 0.0 (no minKernel rule applies). */
export function parseKernelRelease(release: string): { major: number; minor: number } {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : { major: 0, minor: 0 };
}

/** Docker's architecture names → libseccomp's, for the archMap lookup. */
const SECCOMP_ARCH: Record<string, string> = {
  x86: 'SCMP_ARCH_X86',
  amd64: 'SCMP_ARCH_X86_64',
  arm: 'SCMP_ARCH_ARM',
  arm64: 'SCMP_ARCH_AARCH64',
  loong64: 'SCMP_ARCH_LOONGARCH64',
  mips64: 'SCMP_ARCH_MIPS64',
  mips64n32: 'SCMP_ARCH_MIPS64N32',
  mipsel64: 'SCMP_ARCH_MIPSEL64',
  mipsel64n32: 'SCMP_ARCH_MIPSEL64N32',
  mipsle: 'SCMP_ARCH_MIPSEL',
  ppc: 'SCMP_ARCH_PPC',
  ppc64: 'SCMP_ARCH_PPC64',
  ppc64le: 'SCMP_ARCH_PPC64LE',
  riscv64: 'SCMP_ARCH_RISCV64',
  s390: 'SCMP_ARCH_S390',
  s390x: 'SCMP_ARCH_S390X',
};

function kernelAtLeast(k: { major: number; minor: number }, min: string): boolean {
  const [major, minor] = min.split('.').map(Number) as [number, number];
  return k.major > major || (k.major === major && k.minor >= minor);
}
