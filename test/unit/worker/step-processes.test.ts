import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findStepProcesses, hasHostsOf, waitForInitExit } from '../../../buildd/worker/step-processes';

const ID = 'buildd-0123456789abcdef01234567';
const hostsLine = (id: string, deleted = ''): string => `209 173 254:0 /home/u/.local/share/buildd/bundles/${id}/hosts${deleted} /etc/hosts ro,relatime - ext4 /dev/vda rw`;
const ROOT_LINE = '173 150 0:51 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w,userxattr';

describe('the processes of a step without a PID namespace, found by mount namespace', () => {
  let proc: string;
  beforeEach(async () => {
    proc = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-fake-proc-'));
  });
  afterEach(async () => {
    await fsp.rm(proc, { recursive: true, force: true });
  });

  /** A process of the fake procfs: its mount namespace, its mount table, its state. */
  const processAt = async (pid: number | 'self', ns: string, mountinfo = '', state = 'S'): Promise<void> => {
    const dir = path.join(proc, String(pid));
    await fsp.mkdir(path.join(dir, 'ns'), { recursive: true });
    await fsp.symlink(`mnt:[${ns}]`, path.join(dir, 'ns', 'mnt'));
    await fsp.writeFile(path.join(dir, 'mountinfo'), mountinfo);
    await fsp.writeFile(path.join(dir, 'stat'), `${pid} (sleep) ) ${state} 1 1 1`);
  };

  it('hasHostsOf: the /etc/hosts bind mount of that container id, also once the bundle is deleted', () => {
    expect(hasHostsOf(`${ROOT_LINE}\n${hostsLine(ID)}\n`, ID)).toBe(true);
    expect(hasHostsOf(hostsLine(ID, '//deleted'), ID)).toBe(true);
    expect(hasHostsOf(hostsLine(`x${ID}`), ID)).toBe(false);
    expect(hasHostsOf(hostsLine('buildd-other'), ID)).toBe(false);
    // the same file mounted elsewhere is not the container's /etc/hosts
    expect(hasHostsOf(hostsLine(ID).replace(' /etc/hosts ', ' /mnt/hosts '), ID)).toBe(false);
  });

  it("finds every process in the step's mount namespace, whatever their session, and none of the daemon's or another step's", async () => {
    await processAt('self', '1');
    await processAt(10, '1');
    await processAt(100, '2', `${ROOT_LINE}\n${hostsLine(ID)}\n`);
    await processAt(101, '2', `${ROOT_LINE}\n${hostsLine(ID)}\n`);
    await processAt(102, '3', `${ROOT_LINE}\n${hostsLine('buildd-other')}\n`);
    // a zombie has no namespaces left
    await fsp.mkdir(path.join(proc, '103'));
    await fsp.mkdir(path.join(proc, 'sys'));
    expect(await findStepProcesses(ID, { procDir: proc })).toEqual([100, 101]);
    expect(await findStepProcesses('buildd-none', { procDir: proc })).toEqual([]);
  });

  it('waitForInitExit resolves once the init named in the pid file is gone or a zombie, or when runc is gone', async () => {
    await processAt(100, '2', hostsLine(ID));
    const pidFile = path.join(proc, 'init.pid');
    await fsp.writeFile(pidFile, '100');
    let done = false;
    const waiting = waitForInitExit(ID, pidFile, new Promise(() => undefined), 5, { procDir: proc }).then(() => (done = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toBe(false);
    await fsp.writeFile(path.join(proc, '100', 'stat'), '100 (sh) Z 1 1 1');
    await waiting;
    // no pid file yet (runc failed before its init ran): runc's end ends the wait
    await expect(waitForInitExit(ID, path.join(proc, 'none.pid'), Promise.resolve(), 5, { procDir: proc })).resolves.toBeUndefined();
  });

  it("waitForInitExit does not take a pid that is not the container's for its init (a reused pid)", async () => {
    await processAt(100, '2', hostsLine('buildd-other'));
    const pidFile = path.join(proc, 'init.pid');
    await fsp.writeFile(pidFile, '100');
    await expect(waitForInitExit(ID, pidFile, new Promise(() => undefined), 5, { procDir: proc })).resolves.toBeUndefined();
  });
});
