import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
let next = randomBytes(1)[0];

/**
 * A CNI network of one test daemon's own: the shape of buildd's default (loopback, a bridge
 * with masquerade, host-local leases) with a unique bridge name, a /24 of 10.215.0.0/16 and a
 * lease dir in the test's temp dir, so that test daemons neither share addresses nor leave
 * buildd's default bridge on the host.
 *
 * Lifecycle: `makeTestNetwork` writes the conflist (the bridge plugin makes the bridge at the
 * first RUN); `remove` deletes the bridge, if it was made, once the daemon has stopped.
 */
export interface TestNetwork {
  conflist: string;
  bridge: string;
  subnet: string;
  remove(): Promise<void>;
}

export async function makeTestNetwork(dir: string): Promise<TestNetwork> {
  const bridge = `bdn${randomBytes(5).toString('hex')}`;
  const subnet = `10.215.${next++ % 256}.0/24`;
  const conflist = path.join(dir, 'test-net.conflist');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(conflist, JSON.stringify({
    cniVersion: '1.0.0',
    name: bridge,
    plugins: [
      { type: 'loopback' },
      { type: 'bridge', bridge, isGateway: true, isDefaultGateway: true, ipMasq: true, ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: path.join(dir, 'ipam') } },
    ],
  }));
  return {
    conflist,
    bridge,
    subnet,
    remove: async () => {
      await run('ip', ['link', 'del', bridge]).catch((err: { stderr?: string }) => {
        if (!/Cannot find device/.test(err.stderr ?? '')) throw err;
      });
    },
  };
}
