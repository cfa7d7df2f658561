#!/usr/bin/env node
'use strict';
// Times checksumPaths (a COPY's content checksum) over a 20,000-file, 80 MB tree: the first
// call in a fresh process (digest cache cold) and a second call (warm). Page cache is warm in
// both: this measures buildd's work, not the disk. Run after `npx tsc -p tsconfig.build.json`:
//   node bench/checksum-tree.js [tree-dir] [runs]
// BENCH_CONCURRENCY=n sets checksumPaths' concurrency; BENCH_DIST=dir takes dist/ from
// another build (say an older commit's); UV_THREADPOOL_SIZE is passed on.
// Prints each run and the medians. The tree is made once (deterministic content) and reused.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { makeBenchTree } = require('./bench-tree');

const dir = process.argv[2] || '/tmp/buildd-bench-checksum-tree';
const runs = Number(process.argv[3] || 3);

function makeTree() {
  makeBenchTree(dir, dir, 1);
}

if (process.argv[2] === '--child') {
  const dist = process.env.BENCH_DIST || path.join(__dirname, '..', 'dist');
  const { checksumPaths } = require(path.join(dist, 'store', 'content-checksum.js'));
  (async () => {
    const cpu = (u) => (u.user + u.system) / 1e6;
    const t0 = process.hrtime.bigint();
    const u0 = process.cpuUsage();
    const options = process.env.BENCH_CONCURRENCY ? { concurrency: Number(process.env.BENCH_CONCURRENCY) } : {};
    const a = await checksumPaths(process.argv[3], ['.'], undefined, {}, options);
    const t1 = process.hrtime.bigint();
    const u1 = process.cpuUsage();
    const b = await checksumPaths(process.argv[3], ['.'], undefined, {}, options);
    const t2 = process.hrtime.bigint();
    const u2 = process.cpuUsage();
    if (a !== b) throw new Error('checksums differ');
    const out = { cold: Number(t1 - t0) / 1e9, warm: Number(t2 - t1) / 1e9, coldCpu: cpu(u1) - cpu(u0), warmCpu: cpu(u2) - cpu(u1), checksum: a };
    process.stdout.write(JSON.stringify(out) + '\n');
  })();
} else {
  makeTree();
  const results = [];
  for (let i = 0; i < runs; i++) {
    const out = JSON.parse(execFileSync(process.execPath, [...process.execArgv, __filename, '--child', dir], { encoding: 'utf8' }));
    console.log(`run ${i + 1}: cold ${out.cold.toFixed(3)} s (cpu ${out.coldCpu.toFixed(3)}), warm ${out.warm.toFixed(3)} s (cpu ${out.warmCpu.toFixed(3)}) ${out.checksum}`);
    results.push(out);
  }
  const median = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const m = (k) => median(results.map((r) => r[k])).toFixed(3);
  console.log(`median of ${runs}: cold ${m('cold')} s (cpu ${m('coldCpu')} s), warm ${m('warm')} s (cpu ${m('warmCpu')} s)`);
}
