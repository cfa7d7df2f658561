import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeContext } from '../helpers/build-env';
import { runBuildctl, startDaemon, type TestDaemon } from '../helpers/daemon';
import { waitFor } from '../helpers/wait-for';

/** One line of buildd's NODE_DEBUG=buildd-checksum log, as store/content-checksum.ts writes it. */
interface ChecksumLine {
  files: number;
  reused: number;
  read: number;
}

function checksumLines(stderr: string): ChecksumLine[] {
  return [...stderr.matchAll(/BUILDD-CHECKSUM \d+: checksum of .*: \d+ entries, (\d+) files, (\d+) digests reused, (\d+) files read/g)].map((m) => ({
    files: Number(m[1]),
    reused: Number(m[2]),
    read: Number(m[3]),
  }));
}

describe('a COPY checksum reuses the digests of files an earlier checksum read', () => {
  let daemon: TestDaemon;
  let tmp: string;
  let server: http.Server;
  let held: http.ServerResponse | undefined;
  let requestedAt: number | undefined;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-checksum-reuse-'));
    daemon = await startDaemon({ builder: 'real', env: { NODE_DEBUG: 'buildd-checksum' } });
    server = http.createServer((_req, res) => {
      requestedAt = Date.now();
      held = res;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    held?.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await daemon?.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('the second COPY of one context reads no file', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 30; i++) files[`src/f${i}.txt`] = `file ${i}\n`.repeat(i + 1);
    const { port } = server.address() as AddressInfo;
    // The ADD holds the build until the test answers: the context has then been received, and
    // the test lets its files age past the cache's racy window (100 ms) before any COPY's key
    // is computed, so the first checksum records every digest it reads.
    const context = await writeContext(path.join(tmp, 'ctx'), {
      ...files,
      Dockerfile: `FROM scratch\nADD http://127.0.0.1:${port}/gate /gate\nCOPY src /a\nCOPY src /b\n`,
    });
    const build = runBuildctl([
      '--addr', daemon.addr, '--tlsdir', path.join(daemon.certsDir as string, 'client'),
      'build', '--frontend', 'dockerfile.v0', '--local', `context=${context}`, '--local', `dockerfile=${context}`, '--progress', 'plain',
    ]);
    await waitFor('the build to fetch the gate', async () => (held !== undefined ? true : undefined));
    await waitFor('the received context to age past the racy window', async () => (Date.now() - requestedAt! > 300 ? true : undefined));
    held!.end('gate\n');
    const result = await build;
    expect(result.code).toBe(0);
    expect(checksumLines(daemon.stderr())).toEqual([
      { files: 30, reused: 0, read: 30 },
      { files: 30, reused: 30, read: 0 },
    ]);
  });
});
