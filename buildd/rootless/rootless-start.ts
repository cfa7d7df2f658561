import * as os from 'node:os';
import { BuildError } from '../../solver/build-error';
import { CHILD_ENV, checkSubids, type SubidFiles } from './rootlesskit-reexec';
import { inUserNamespace } from './user-namespace';

/**
 * What `buildd --rootless` does next: `reexec` under rootlesskit (started by the unprivileged
 * user in the initial user namespace), or go on `inside` (root of a user namespace already,
 * the rootlesskit child or a user's own `rootlesskit buildd --rootless`).
 */
export type RootlessStart = 'inside' | 'reexec';

/** Decides, refusing with `failed-precondition` the starts that cannot work. */
export async function rootlessStart(subidFiles?: SubidFiles): Promise<RootlessStart> {
  const uid = process.getuid?.() ?? 0;
  if (await inUserNamespace()) {
    if (uid !== 0) throw new BuildError('failed-precondition', `Cannot start buildd --rootless: it runs as uid ${uid} of a user namespace and must be that namespace's root (uid 0)`);
    return 'inside';
  }
  if (uid === 0) {
    throw new BuildError('failed-precondition', 'Cannot start buildd --rootless: it was started as root; start it as the unprivileged user whose namespaces it should use, or without --rootless');
  }
  // rootlesskit started us and we are still in the initial namespace: re-executing would loop
  if (process.env[CHILD_ENV] === '1') throw new BuildError('internal', 'Cannot start buildd --rootless: rootlesskit started it outside of a user namespace');
  const info = os.userInfo();
  await checkSubids({ name: info.username, uid, gid: process.getgid?.() ?? info.gid }, subidFiles);
  return 'reexec';
}

/** The line that tells an operator rootless RUN steps reach out (CNI bridge behind slirp4netns). */
export const ROOTLESS_NETWORK_ON = 'rootless: RUN steps reach the network through a CNI bridge in buildd\'s own network namespace and slirp4netns (host loopback not reachable)';

/** The start of the line that says why rootless RUN steps have loopback only; the reason follows. */
export const ROOTLESS_NETWORK_OFF = 'rootless: networking is off, RUN steps have loopback only';
