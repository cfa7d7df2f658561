#!/usr/bin/env node
// How long assembling an image (diff + compress every layer into a fresh content store) takes,
// for a multi-layer result made here from deterministic data, so that two builds of buildd
// (say, main's dist and this one's) can be compared on the same bytes, digests included.
//
//   node bench/export-layers.js [--dist DIR] [--runs N] [--layers N] [--mb N] [--files N]
//                               [--compression gzip|zstd|uncompressed] [--level N] [--parallel N]
//                               [--cpu-prof FILE]
//
// DIR defaults to ./dist. Needs root (overlay snapshots). Prints one line per run (seconds and
// manifest digest) and the median; asserts nothing. Other processes on the machine make the
// figures noisy: compare medians of several runs, alternating the builds.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const dist = path.resolve(opt('dist', path.join(__dirname, '..', 'dist')));
const runs = Number(opt('runs', '3'));
const layerCount = Number(opt('layers', '4'));
const mb = Number(opt('mb', '24'));
const fileCount = Number(opt('files', '1500'));
const compression = opt('compression', undefined);
const level = opt('level', undefined);
/** --cpu-prof FILE: a V8 CPU profile of the first run's export only (not of making the data). */
const profileFile = opt('cpu-prof', undefined);
/** --parallel N: pretend the machine has N cores (the export compresses that many layers at once). */
const parallel = opt('parallel', undefined);
if (parallel !== undefined) os.availableParallelism = () => Number(parallel);

const { OverlaySnapshotter } = require(path.join(dist, 'store', 'overlay-snapshotter.js'));
const { LocalContentStore } = require(path.join(dist, 'store', 'content-store.js'));
const { LayerIndex } = require(path.join(dist, 'store', 'layer-index.js'));
const { assembleImage } = require(path.join(dist, 'store', 'image-assembler.js'));

/** xorshift32: the same bytes on every run and machine. */
function prng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

const WORDS = 'layer image build cache export gzip zstd snapshot content digest manifest config registry push pull tar file dir link mode owner'.split(' ');

/** Text-like, compressible about 3:1 like source trees and binaries are. */
function textBytes(rand, size) {
  const parts = [];
  let n = 0;
  while (n < size) {
    const w = rand() % 7 === 0 ? (rand() % 100000).toString(36) : WORDS[rand() % WORDS.length];
    parts.push(w);
    n += w.length + 1;
  }
  return Buffer.from(parts.join(rand() % 2 ? ' ' : '\n')).subarray(0, size);
}

async function makeLayers(snaps) {
  let parent;
  for (let l = 0; l < layerCount; l++) {
    const rand = prng(1000 + l);
    const active = await snaps.prepare(parent);
    try {
      const root = await active.mount();
      const dir = path.join(root, `layer${l}`);
      for (let i = 0; i < fileCount; i++) {
        const sub = path.join(dir, `d${i % 40}`);
        fs.mkdirSync(sub, { recursive: true });
        fs.writeFileSync(path.join(sub, `f${i}.txt`), textBytes(rand, 512 + (rand() % 4096)));
      }
      const big = fs.openSync(path.join(dir, 'big.bin'), 'w');
      for (let written = 0; written < mb * 1024 * 1024; written += 1024 * 1024) fs.writeSync(big, textBytes(rand, 1024 * 1024));
      fs.closeSync(big);
      // Fixed times: the same tars, so that two builds of buildd can be compared by layer digest.
      const stamp = (p) => {
        if (fs.lstatSync(p).isDirectory()) for (const n of fs.readdirSync(p)) stamp(path.join(p, n));
        fs.utimesSync(p, 1700000000, 1700000000);
      };
      stamp(dir);
      parent = await snaps.commit(active);
    } finally {
      await active.release();
    }
  }
  return parent;
}

/** CPU seconds of this process (all its threads) and of its children that ended (zstd). */
function cpuSeconds() {
  const own = process.cpuUsage();
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // cutime and cstime, fields 16 and 17 of proc(5), in clock ticks (100 a second on Linux)
  const children = (Number(fields[13]) + Number(fields[14])) / 100;
  return (own.user + own.system) / 1e6 + children;
}

async function startProfile() {
  const inspector = require('node:inspector');
  const session = new inspector.Session();
  session.connect();
  const post = (method) => new Promise((resolve, reject) => session.post(method, (err, res) => (err ? reject(err) : resolve(res))));
  await post('Profiler.enable');
  await post('Profiler.start');
  return { stop: async () => (await post('Profiler.stop')).profile };
}

(async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'buildd-bench-export-'));
  try {
    const snaps = await OverlaySnapshotter.open(root);
    const top = await makeLayers(snaps);
    const image = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } };
    const request = compression === undefined ? undefined : {
      compression: { type: compression, ...(compression === 'uncompressed' ? {} : { level: Number(level ?? (compression === 'gzip' ? 6 : 3)) }) },
      force: false,
    };
    const times = [];
    for (let r = 0; r < runs; r++) {
      const runDir = path.join(root, `run${r}`);
      const content = await LocalContentStore.open(path.join(runDir, 'content'));
      const layers = await LayerIndex.open(runDir);
      const session = profileFile && r === 0 ? await startProfile() : undefined;
      const cpu0 = cpuSeconds();
      const t0 = process.hrtime.bigint();
      const out = await assembleImage({ snapshotter: snaps, content, layers }, top, image, new AbortController().signal, request);
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = cpuSeconds() - cpu0;
      if (session) fs.writeFileSync(profileFile, JSON.stringify(await session.stop()));
      times.push(s);
      const bytes = out.layers.reduce((a, l) => a + l.size, 0);
      // The manifest digest moves with the snapshots' times; the layers' do not.
      const layerSum = require('node:crypto').createHash('sha256').update(out.layers.map((l) => l.digest).join()).digest('hex').slice(0, 16);
      console.log(`run ${r + 1}: ${s.toFixed(2)} s  cpu ${cpu.toFixed(2)} s  ${(bytes / 1e6).toFixed(1)} MB of layers  layers ${layerSum}`);
      fs.rmSync(runDir, { recursive: true, force: true });
    }
    times.sort((a, b) => a - b);
    console.log(`median ${times[Math.floor(times.length / 2)].toFixed(2)} s (${layerCount} layers of ${fileCount} files + ${mb} MiB, ${compression ?? 'default'}${level ? ` level ${level}` : ''}, ${path.relative(process.cwd(), dist) || dist})`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
})().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
