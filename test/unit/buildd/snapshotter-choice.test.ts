import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { chooseSnapshotter, openSnapshotter, SNAPSHOTTER_RECORD } from '../../../buildd/worker/open-snapshotter';
import { resolveConfig } from '../../../buildd/run-daemon';
import { MetaDb } from '../../../store/meta-db';
import { captureLogger } from '../../helpers/capture-logger';

const refused = (): Promise<void> => Promise.reject(new BuildError('failed-precondition', 'Cannot use overlayfs under /r/tmp: a test mount was refused: wrong fs type (/r/tmp is on overlay)'));
const works = (): Promise<void> => Promise.resolve();

describe('--oci-worker-snapshotter: choosing the snapshotter (probe injected)', () => {
  it('auto takes overlayfs when the probe mount works, native with the reason when it does not', async () => {
    await expect(chooseSnapshotter('auto', undefined, works, '/r')).resolves.toEqual({ name: 'overlayfs' });
    await expect(chooseSnapshotter('auto', undefined, refused, '/r')).resolves.toEqual({
      name: 'native',
      fallbackReason: 'Cannot use overlayfs under /r/tmp: a test mount was refused: wrong fs type (/r/tmp is on overlay)',
    });
  });

  it('native never probes; a forced overlayfs that the probe refuses fails, saying why and what copies instead', async () => {
    const probe = jest.fn(works);
    await expect(chooseSnapshotter('native', undefined, probe, '/r')).resolves.toEqual({ name: 'native' });
    expect(probe).not.toHaveBeenCalled();
    await expect(chooseSnapshotter('overlayfs', undefined, refused, '/r')).rejects.toMatchObject({
      code: 'failed-precondition',
      message: 'Cannot use overlayfs under /r/tmp: a test mount was refused: wrong fs type (/r/tmp is on overlay); --oci-worker-snapshotter native (or auto) copies layers instead',
    });
  });

  it('keeps the snapshotter a root was made with (auto reopens it without a probe) and refuses the other by name', async () => {
    const probe = jest.fn(refused);
    await expect(chooseSnapshotter('auto', 'overlayfs', probe, '/r')).resolves.toEqual({ name: 'overlayfs' });
    await expect(chooseSnapshotter('auto', 'native', probe, '/r')).resolves.toEqual({ name: 'native' });
    expect(probe).not.toHaveBeenCalled();
    await expect(chooseSnapshotter('overlayfs', 'native', works, '/r')).rejects.toMatchObject({
      code: 'failed-precondition',
      message: 'Cannot open /r with the overlayfs snapshotter: it was made with the native snapshotter (its snapshots are kept differently); start with --oci-worker-snapshotter native (or auto), or use another --root',
    });
  });
});

describe('openSnapshotter: the record in the daemon root', () => {
  let root: string;
  // the database lives elsewhere, so that what the open leaves in the root shows alone
  let metaRoot: string;
  let meta: MetaDb;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-snapchoice-'));
    metaRoot = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-snapchoice-meta-'));
    meta = MetaDb.open(metaRoot);
  });
  afterEach(async () => {
    meta.close();
    await fsp.rm(root, { recursive: true, force: true });
    await fsp.rm(metaRoot, { recursive: true, force: true });
  });
  const open = (requested: 'auto' | 'overlayfs' | 'native'): Promise<unknown> =>
    openSnapshotter({ root, requested, overlayXattrs: 'trusted', logger: captureLogger().logger, meta });

  it('refuses a root recorded as native when overlayfs is asked for, before touching it', async () => {
    await fsp.writeFile(path.join(root, SNAPSHOTTER_RECORD), '{"snapshotter":"native"}\n');
    await expect(open('overlayfs')).rejects.toThrow(`Cannot open ${root} with the overlayfs snapshotter: it was made with the native snapshotter`);
    expect((await fsp.readdir(root)).sort()).toEqual([SNAPSHOTTER_RECORD, 'tmp']);
  });

  it('takes a root made before the record (overlay snapshots/ in it) as overlayfs', async () => {
    await fsp.mkdir(path.join(root, 'snapshots'));
    await expect(open('native')).rejects.toThrow(`Cannot open ${root} with the native snapshotter: it was made with the overlayfs snapshotter`);
  });

  it('leaves no record when the chosen snapshotter cannot open, so a new root stays free', async () => {
    // a file where the native snapshotter keeps its snapshots: its open fails
    await fsp.writeFile(path.join(root, 'snapshots-native'), '');
    await expect(open('native')).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(fsp.access(path.join(root, SNAPSHOTTER_RECORD))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('names a damaged record', async () => {
    await fsp.writeFile(path.join(root, SNAPSHOTTER_RECORD), '{"snapshotter":"vfs"}');
    await expect(open('auto')).rejects.toThrow(`Cannot open ${root}: ${path.join(root, SNAPSHOTTER_RECORD)} does not say which snapshotter made the root`);
  });
});

describe('--oci-worker-snapshotter in flags and config', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-snapcfg-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('defaults to auto, reads the config key snapshotter, and the flag overrides it', async () => {
    expect((await resolveConfig([])).snapshotter).toBe('auto');
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ snapshotter: 'native' }));
    expect((await resolveConfig(['--config', f])).snapshotter).toBe('native');
    expect((await resolveConfig(['--config', f, '--oci-worker-snapshotter', 'overlayfs'])).snapshotter).toBe('overlayfs');
  });

  it('refuses an unknown name in the flag and in the file', async () => {
    await expect(resolveConfig(['--oci-worker-snapshotter', 'vfs'])).rejects.toMatchObject({ code: 'commander.invalidArgument' });
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ snapshotter: 'vfs' }));
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: snapshotter: Invalid enum value. Expected 'auto' | 'overlayfs' | 'native', received 'vfs'`);
  });
});
