/**
 * The fuzzer's deterministic half and its worker loop. fuzz.test.ts imports the mutator to
 * rebuild a failing input from (seed, index); the same file runs inside a worker thread, where
 * a frontend stuck in a synchronous loop can be killed by the test instead of hanging jest.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { BuildError } from '../../../solver/build-error';
import { ImageConfig } from '../../../store/image-config';
import { dockerfileToGraph } from '../../../frontend/dockerfile-frontend';
import { BUSYBOX, fakeResolver } from './fake-resolver';

/** One Dockerfile of the corpus and where it came from, for the report. */
export interface CorpusEntry {
  origin: string;
  text: string;
}

/** What the test hands to the worker. */
export interface FuzzJob {
  marker: 'buildd-frontend-fuzz';
  corpus: CorpusEntry[];
  seed: number;
  rounds: number;
  filename: string;
}

/** An input that ended in something other than a result or a BuildError naming its line. */
export interface FuzzFailure {
  index: number;
  /** the thrown value's constructor name, or the type of a non-object */
  thrown: string;
  message: string;
  stack?: string;
}

/** The worker's messages: `start` before each input, so the test knows which one hangs. */
export type FuzzMessage =
  | { kind: 'ready' }
  | { kind: 'start'; index: number }
  | { kind: 'failure'; failure: FuzzFailure }
  | { kind: 'done'; results: number; errors: number };

/** One generated input, with the corpus entry and mutations that made it. */
export interface FuzzInput {
  text: string;
  origin: string;
  mutations: string[];
}

/** mulberry32: small, fast and good enough to pick mutations; same seed, same sequence. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** an integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

/** Each input gets a seed of its own so that one index can be rebuilt without the others. */
function inputSeed(seed: number, index: number): number {
  let z = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Bytes and words that tend to matter to a Dockerfile parser or the shell lexer. */
const SPECIAL = [
  '\0', '\r', '\r\n', '\n', '\t', '\\', '\\\n', '`', '$', '${', '}', '{', '"', "'", '<<', '<<-', '<<EOF\n',
  '=', '--', '[', ']', ',', ':', '#', '# escape=`\n', '# syntax=x\n', '$$', '${a:-', '${a:+', '${a-', '${a?',
  ':-', ':+', '\uFEFF', '\uD800', '\u00e9', '\u{1F600}', '\u2028', ' ', 'FROM ', 'AS ', '--from=0 ', '--chown=',
];

/** Random bytes decoded as UTF-8 the way the daemon decodes a Dockerfile: invalid ones become U+FFFD. */
function randomBytes(rng: Prng): string {
  const bytes = Buffer.alloc(1 + rng.int(8));
  for (let i = 0; i < bytes.length; i++) bytes[i] = rng.pick([0x00, 0x0d, 0x5c, 0x24, 0x7b, 0x22, 0xc3, 0xff, 0xe2, 0x80, rng.int(256)]);
  return bytes.toString('utf8');
}

/** Inputs that grow work or memory with their size: they must finish within the deadline. */
function blowup(rng: Prng): string {
  const n = 200 + rng.int(3000);
  // Nesting goes deeper than a recursive-descent expander's stack allows (about 5000 levels).
  const depth = 1000 + rng.int(15000);
  switch (rng.int(8)) {
    case 0: return rng.pick(['ENV a=', 'LABEL l=', 'WORKDIR /', 'USER ']) + '${a:-'.repeat(depth) + 'x' + '}'.repeat(depth);
    case 1: return rng.pick(['RUN echo ', 'ENV b=', 'ARG c=']) + '${a:+'.repeat(depth) + '$a' + '}'.repeat(rng.int(depth + 1));
    case 2: return 'LABEL x=' + 'a'.repeat(50_000 + rng.int(150_000));
    case 3: return 'RUN echo \\\n'.repeat(n) + 'done';
    case 4: return 'ENV ' + Array.from({ length: n }, (_, i) => `k${i}=$k${Math.max(0, i - 1)}`).join(' ');
    case 5: return 'COPY ' + '"'.repeat(n) + ' /x';
    case 6: return 'RUN <<EOF\n' + 'line\n'.repeat(n);
    default: return 'ARG ' + Array.from({ length: n }, (_, i) => `a${i}=\${a${i}:-\${b}}`).join(' ');
  }
}

/** A token: a run of non-blank characters; mutations on tokens keep the blanks between them. */
function tokens(line: string): string[] {
  return line.split(/(\s+)/);
}

function mutateOnce(text: string, rng: Prng, corpus: CorpusEntry[]): [string, string] {
  const lines = text.split('\n');
  const li = rng.int(lines.length);
  const lj = rng.int(lines.length);
  const op = rng.int(14);
  switch (op) {
    case 0:
      lines.splice(li, 1);
      return [lines.join('\n'), `delete line ${li + 1}`];
    case 1:
      lines.splice(li, 0, lines[li]);
      return [lines.join('\n'), `duplicate line ${li + 1}`];
    case 2:
      [lines[li], lines[lj]] = [lines[lj], lines[li]];
      return [lines.join('\n'), `swap lines ${li + 1} and ${lj + 1}`];
    case 3:
    case 4:
    case 5: {
      const toks = tokens(lines[li]);
      const words = toks.map((t, i) => (/\S/.test(t) ? i : -1)).filter((i) => i >= 0);
      if (words.length === 0) return [text, 'no token to change'];
      const a = rng.pick(words);
      const b = rng.pick(words);
      if (op === 3) toks.splice(a, 1);
      else if (op === 4) toks.splice(a, 0, toks[a], ' ');
      else [toks[a], toks[b]] = [toks[b], toks[a]];
      lines[li] = toks.join('');
      return [lines.join('\n'), `${['delete', 'duplicate', 'swap'][op - 3]} token on line ${li + 1}`];
    }
    case 6:
    case 7: {
      const at = rng.int(text.length + 1);
      const what = op === 6 ? randomBytes(rng) : rng.pick(SPECIAL);
      return [text.slice(0, at) + what + text.slice(at), `insert ${JSON.stringify(what)} at ${at}`];
    }
    case 8: {
      const at = rng.int(text.length);
      const what = rng.pick(SPECIAL);
      return [text.slice(0, at) + what + text.slice(at + 1), `replace char at ${at} with ${JSON.stringify(what)}`];
    }
    case 9: {
      const at = rng.int(text.length + 1);
      return [text.slice(0, at), `truncate at ${at}`];
    }
    case 10: {
      const times = 50 + rng.int(2000);
      lines.splice(li, 1, ...Array<string>(times).fill(lines[li]));
      return [lines.join('\n'), `repeat line ${li + 1} ${times} times`];
    }
    case 11: {
      const donor = rng.pick(corpus).text.split('\n');
      lines.splice(li, 0, rng.pick(donor));
      return [lines.join('\n'), `splice a line from another Dockerfile at ${li + 1}`];
    }
    case 12:
      lines.splice(li + 1, 0, blowup(rng));
      return [lines.join('\n'), `insert a blow-up line after ${li + 1}`];
    default:
      return [text.replace(/\n/g, rng.pick(['\r\n', '\r', '\n\n', ' \\\n'])), 'change line endings'];
  }
}

/** Big enough for every blow-up line and a line repeated a few thousand times. */
export const MAX_INPUT_CHARS = 256 * 1024;

/** The index-th input of a run: a corpus entry (unchanged for the first pass) with 1 to 4 mutations. */
export function fuzzInput(corpus: CorpusEntry[], seed: number, index: number): FuzzInput {
  const entry = corpus[index % corpus.length];
  // The first pass over the corpus runs each file as written: a failure there is no mutation's fault.
  if (index < corpus.length) return { text: entry.text, origin: entry.origin, mutations: [] };
  const rng = new Prng(inputSeed(seed, index));
  let text = entry.text;
  const mutations: string[] = [];
  for (let n = 1 + rng.int(4); n > 0; n--) {
    const [next, what] = mutateOnce(text, rng, corpus);
    // Mutations compound (a line repeated, joined, repeated again); past the cap an input tests
    // the machine's memory rather than the frontend, so the mutation is dropped.
    if (next.length > MAX_INPUT_CHARS) continue;
    text = next;
    mutations.push(what);
  }
  return { text, origin: entry.origin, mutations };
}

/** An image whose ONBUILD triggers buildd refuses: one more error path for FROM lines. */
const ONBUILD_IMAGE: ImageConfig = { ...BUSYBOX, config: { ...BUSYBOX.config, OnBuild: ['RUN true'] } };

const FILE_LEVEL_MESSAGES = [
  // Whole-file faults have no line to name; BuildKit reports them without one too.
  (filename: string) => `Cannot read ${filename}: the Dockerfile cannot be empty`,
  (filename: string) => `Cannot build ${filename}: it contains no stages to build (no FROM)`,
];

/** Whether a thrown value is what the frontend promises: a BuildError that names file and line. */
export function acceptable(err: unknown, filename: string): boolean {
  if (!(err instanceof BuildError)) return false;
  if (err.message.includes(filename + ':') && new RegExp(escapeRegExp(filename) + ':\\d+').test(err.message)) return true;
  return FILE_LEVEL_MESSAGES.some((m) => m(filename) === err.message);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function thrownName(err: unknown): string {
  if (typeof err === 'object' && err !== null) return err.constructor?.name ?? 'Object';
  return typeof err;
}

async function runJob(job: FuzzJob, post: (m: FuzzMessage) => void): Promise<void> {
  const resolveImage = fakeResolver({ 'localhost:5000/busybox:latest': BUSYBOX, 'localhost:5000/onbuild:latest': ONBUILD_IMAGE });
  post({ kind: 'ready' });
  let results = 0;
  let errors = 0;
  for (let index = 0; index < job.rounds; index++) {
    post({ kind: 'start', index });
    const input = fuzzInput(job.corpus, job.seed, index);
    // Build args that some corpus files declare, so that override paths run too.
    const buildArgs: Record<string, string> = index % 3 === 0 ? { VERSION: '9.9', CHANNEL: 'beta', BASE: 'localhost:5000/busybox:latest' } : {};
    try {
      await dockerfileToGraph({ dockerfile: input.text, filename: job.filename, buildArgs, noCache: index % 5 === 0, contextName: 'context', resolveImage });
      results++;
    } catch (err) {
      if (acceptable(err, job.filename)) {
        errors++;
        continue;
      }
      const message = err instanceof Error ? err.message : String(err);
      post({ kind: 'failure', failure: { index, thrown: thrownName(err), message, stack: err instanceof Error ? err.stack : undefined } });
    }
  }
  post({ kind: 'done', results, errors });
}

function isFuzzJob(data: unknown): data is FuzzJob {
  return typeof data === 'object' && data !== null && (data as { marker?: unknown }).marker === 'buildd-frontend-fuzz';
}

if (!isMainThread && parentPort && isFuzzJob(workerData)) {
  const port = parentPort;
  // A rejection here is a bug in the loop itself: left unhandled, it ends the worker with an
  // error event that the test reports.
  void runJob(workerData, (m) => port.postMessage(m));
}
