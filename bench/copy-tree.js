#!/usr/bin/env node
'use strict';
// Times one COPY (copyAction, the daemon's COPY . /src) of a 20,000-file, 80 MB tree onto an
// empty directory, in a fresh process each run; page cache warm: this measures buildd's work,
// not the disk. Run after `npx tsc -p tsconfig.build.json`:
//   node bench/copy-tree.js [tree-dir] [runs]
// BENCH_DIST=dir takes dist/ from another build (say an older commit's); UV_THREADPOOL_SIZE
// is passed on. Prints each run (wall and CPU seconds) and the medians. Needs root (chown).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { makeBenchTree } = require('./bench-tree');

const dir = process.argv[2] || '/tmp/buildd-bench-copy-tree';
const runs = Number(process.argv[3] || 3);

function makeTree() {
  makeBenchTree(dir, path.join(dir, 'src'), 7);
}

if (process.argv[2] === '--child') {
  const dist = process.env.BENCH_DIST || path.join(__dirname, '..', 'dist');
  const { copyAction } = require(path.join(dist, 'store', 'fs-copy.js'));
  (async () => {
    const dest = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-copy-'));
    try {
      const t0 = process.hrtime.bigint();
      const u0 = process.cpuUsage();
      await copyAction({ srcPaths: ['.'], dest: '/src' }, process.argv[3], dest, {});
      const t1 = process.hrtime.bigint();
      const u = process.cpuUsage(u0);
      const count = Number(execFileSync('sh', ['-c', `find ${dest}/src -type f | wc -l`], { encoding: 'utf8' }).trim());
      process.stdout.write(JSON.stringify({ wall: Number(t1 - t0) / 1e9, cpu: (u.user + u.system) / 1e6, user: u.user / 1e6, count }) + '\n');
    } finally {
      fs.rmSync(dest, { recursive: true, force: true });
    }
  })();
} else {
  makeTree();
  const results = [];
  for (let i = 0; i < runs; i++) {
    // the previous run's deletions and writes reach the disk first: each run starts alike
    execFileSync('sync');
    const out = JSON.parse(execFileSync(process.execPath, [...process.execArgv, __filename, '--child', path.join(dir, 'src')], { encoding: 'utf8' }));
    console.log(`run ${i + 1}: ${out.wall.toFixed(3)} s (cpu ${out.cpu.toFixed(3)} s, user ${out.user.toFixed(3)} s), ${out.count} files`);
    results.push(out);
  }
  const median = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  console.log(`median of ${runs}: ${median(results.map((r) => r.wall)).toFixed(3)} s (cpu ${median(results.map((r) => r.cpu)).toFixed(3)} s, user ${median(results.map((r) => r.user)).toFixed(3)} s)`);
}
