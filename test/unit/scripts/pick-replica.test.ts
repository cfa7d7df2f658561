import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

const script = path.join(__dirname, '../../../scripts/pick-replica.sh');
const pick = (key: string, addrs: string[]): string => execFileSync('bash', [script, key, ...addrs], { encoding: 'utf8' }).trim();

describe('scripts/pick-replica.sh (rendezvous hashing over the replicas)', () => {
  const three = ['tcp://b0:1234', 'tcp://b1:1234', 'tcp://b2:1234'];
  const keys = Array.from({ length: 60 }, (_, i) => `git@example.com:team/repo-${i}.git`);

  test('a key always gets the same replica, whatever the order of the list, and keys spread over all replicas', () => {
    const placed = keys.map((k) => pick(k, three));
    expect(keys.map((k) => pick(k, [...three].reverse()))).toEqual(placed);
    for (const addr of three) expect(placed.filter((p) => p === addr).length).toBeGreaterThan(5);
  });

  test('adding a replica moves only keys to the new one; removing one moves only its own keys', () => {
    const before = keys.map((k) => pick(k, three));
    const grown = keys.map((k) => pick(k, [...three, 'tcp://b3:1234']));
    grown.forEach((addr, i) => expect(addr === before[i] || addr === 'tcp://b3:1234').toBe(true));
    const shrunk = keys.map((k) => pick(k, three.slice(0, 2)));
    shrunk.forEach((addr, i) => {
      if (before[i] !== 'tcp://b2:1234') expect(addr).toBe(before[i]);
    });
  });

  test('without addresses it says how to use it', () => {
    expect(() => execFileSync('bash', [script, 'key'], { stdio: 'pipe' })).toThrow(/usage/);
  });
});
