import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { dockerfileOnly, readDockerIgnore, sortedNames, walkContext } from '../../../buildctl/context-walk';

async function sent(dir: string, ignore: Awaited<ReturnType<typeof readDockerIgnore>>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walkContext(dir, ignore)) out.push(e.rel);
  return out.sort();
}

describe('context walk', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'walk-'));
    mkdirSync(path.join(dir, 'build', 'sub'), { recursive: true });
    for (const f of ['a.txt', 'b.log', 'build/out.js', 'build/sub/keep.js', 'Dockerfile', 'docker/Dockerfile.prod']) {
      mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
      writeFileSync(path.join(dir, f), f);
    }
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('<Dockerfile>.dockerignore beside the Dockerfile takes precedence over .dockerignore', async () => {
    writeFileSync(path.join(dir, '.dockerignore'), '*.log\n');
    writeFileSync(path.join(dir, 'docker', 'Dockerfile.prod.dockerignore'), 'build\n!build/sub/keep.js\n');
    const generic = await sent(dir, await readDockerIgnore(dir, path.join(dir, 'Dockerfile')));
    expect(generic).not.toContain('b.log');
    expect(generic).toContain('build/out.js');
    const specific = await sent(dir, await readDockerIgnore(dir, path.join(dir, 'docker', 'Dockerfile.prod')));
    expect(specific).toContain('b.log');
    expect(specific).not.toContain('build/out.js');
    expect(specific).toContain('build/sub/keep.js');
  });

  test('a symlinked .dockerignore is not followed', async () => {
    writeFileSync(path.join(dir, 'rules'), '*.txt\n');
    symlinkSync('rules', path.join(dir, '.dockerignore'));
    expect(await readDockerIgnore(dir)).toBeUndefined();
  });

  test('of the dockerfile dir only the Dockerfile and its ignore file are sent', async () => {
    writeFileSync(path.join(dir, 'docker', 'Dockerfile.prod.dockerignore'), 'x\n');
    expect(await sent(dir, dockerfileOnly('docker/Dockerfile.prod'))).toEqual(['docker', 'docker/Dockerfile.prod', 'docker/Dockerfile.prod.dockerignore']);
    expect(await sent(dir, dockerfileOnly('Dockerfile'))).toEqual(['Dockerfile']);
  });

  test('a Dockerfile name with glob characters is matched as itself', async () => {
    writeFileSync(path.join(dir, 'Dockerfile[x'), '');
    writeFileSync(path.join(dir, 'Dockerfile*'), '');
    expect(await sent(dir, dockerfileOnly('Dockerfile[x'))).toEqual(['Dockerfile[x']);
    expect(await sent(dir, dockerfileOnly('Dockerfile*'))).toEqual(['Dockerfile*']);
  });

  test('walks in byte order of the UTF-8 names, also where UTF-16 order differs', () => {
    const names = ['b', '\u{1F600}', '\uFF21', 'a', 'B', '\u00E9'];
    const bytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(sortedNames([...names])).toEqual(bytes);
    // U+FF21 before the emoji in UTF-8, after it in UTF-16
    expect(bytes.indexOf('\uFF21')).toBeLessThan(bytes.indexOf('\u{1F600}'));
    expect(sortedNames(['c', 'a', 'b'])).toEqual(['a', 'b', 'c']);
    for (const n of names) writeFileSync(path.join(dir, 'build', n), n);
    const order = [...walkContext(path.join(dir, 'build'))].map((e) => e.rel).filter((r) => !r.includes('/') && !['out.js', 'sub'].includes(r));
    expect(order).toEqual(bytes);
  });
});
