import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openSlirpUplink, tunProblem } from '../../../buildd/rootless/slirp-uplink';

describe('buildd --rootless: when networking is off', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-rootless-net-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('says that a missing tun device does not exist and how to load it', async () => {
    const device = path.join(dir, 'no-tun');
    expect(await tunProblem(device)).toBe(`${device} does not exist (load the tun module: modprobe tun)`);
  });

  it('gives the reason instead of an uplink, and makes no namespace, when the tun device cannot be opened', async () => {
    const device = path.join(dir, 'no-tun');
    const state = path.join(dir, 'net');
    expect(await openSlirpUplink(state, device)).toEqual({ off: `${device} does not exist (load the tun module: modprobe tun)` });
    await expect(fsp.access(state)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
