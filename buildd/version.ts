import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The package version, read from the nearest package.json named "buildd" above this file, so
 * it is right both from the sources (ts-jest) and from dist/.
 */
export function builddVersion(): string {
  let dir = __dirname;
  for (;;) {
    const file = path.join(dir, 'package.json');
    try {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'buildd' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here: keep climbing
    }
    const parent = path.dirname(dir);
    if (parent === dir) return '0.0.0-unknown';
    dir = parent;
  }
}
