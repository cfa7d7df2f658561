import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeEtcFiles } from '../../../buildd/worker/etc-files';

describe('writeEtcFiles', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-etc-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const write = async (name: string, text: string): Promise<string> => {
    const f = path.join(dir, name);
    await fsp.writeFile(f, text);
    return f;
  };

  it("keeps the host's non-loopback resolvers and names the step's hostname in hosts", async () => {
    const host = await write('host.conf', 'nameserver 127.0.0.53\nnameserver 10.1.2.3\nsearch example\n');
    const files = await writeEtcFiles(dir, 'sandbox7', host, path.join(dir, 'absent'));
    expect(await fsp.readFile(files.resolvConf, 'utf8')).toBe('nameserver 10.1.2.3\nsearch example\n');
    expect(await fsp.readFile(files.hosts, 'utf8')).toMatch(/^127\.0\.0\.1\tlocalhost sandbox7\n/);
    expect(await fsp.readFile(files.hostname, 'utf8')).toBe('sandbox7\n');
  });

  it("uses systemd-resolved's upstream servers when the host names only its 127.0.0.53 stub", async () => {
    const host = await write('host.conf', 'nameserver 127.0.0.53\noptions edns0\nsearch lan\n');
    const resolved = await write('resolved.conf', 'nameserver 192.0.2.53\nsearch lan\n');
    const files = await writeEtcFiles(dir, 'b', host, resolved);
    expect(await fsp.readFile(files.resolvConf, 'utf8')).toBe('nameserver 192.0.2.53\nsearch lan\n');
  });

  it("falls back to Docker's servers, keeping search and options, when no resolver remains", async () => {
    const host = await write('host.conf', 'nameserver 127.0.0.53\nsearch lan\n');
    const files = await writeEtcFiles(dir, 'b', host, path.join(dir, 'absent'));
    expect(await fsp.readFile(files.resolvConf, 'utf8')).toBe('nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch lan\n');
    const none = await writeEtcFiles(dir, 'b', path.join(dir, 'no-host-file'), path.join(dir, 'absent'));
    expect(await fsp.readFile(none.resolvConf, 'utf8')).toBe('nameserver 8.8.8.8\nnameserver 8.8.4.4\n');
  });
});
