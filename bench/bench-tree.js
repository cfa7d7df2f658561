'use strict';
// The benchmark tree of the speed issue: 200 directories of 100 files of 4,000 bytes (20,000
// files, 80 MB), deterministic content from `seed`, made once under `dir` (a `.complete` marker
// says it is whole) and reused by later runs.
const fs = require('node:fs');
const path = require('node:path');

const DIRS = 200;
const FILES_PER_DIR = 100;
const FILE_SIZE = 4000;

/** Makes the tree under `root` unless `dir` already holds a complete one. */
function makeBenchTree(dir, root, seed) {
  if (fs.existsSync(path.join(dir, '.complete'))) return;
  fs.rmSync(dir, { recursive: true, force: true });
  for (let d = 0; d < DIRS; d++) {
    const sub = path.join(root, `d${String(d).padStart(3, '0')}`);
    fs.mkdirSync(sub, { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) {
      const buf = Buffer.allocUnsafe(FILE_SIZE);
      for (let i = 0; i < FILE_SIZE; i += 4) buf.writeUInt32LE((seed = (seed * 1664525 + 1013904223) >>> 0), i);
      fs.writeFileSync(path.join(sub, `f${String(f).padStart(3, '0')}.dat`), buf);
    }
  }
  fs.writeFileSync(path.join(dir, '.complete'), '');
}

module.exports = { makeBenchTree };
