/**
 * Fuzzes dockerfileToGraph with mutated Dockerfiles: every input must end in a FrontendResult or
 * a BuildError naming the Dockerfile and a line, and must finish. The loop runs in a worker
 * thread because a synchronous infinite loop in the frontend cannot be interrupted in-process;
 * the worker reports each input before it starts, and the test terminates it when none
 * finishes for PROGRESS_DEADLINE_MS.
 *
 * The seed is fixed unless FUZZ_SEED=<n> or FUZZ_SEED=random is given; FUZZ_ROUNDS=<n> sets the
 * number of inputs. A failure prints the seed and writes the input under os.tmpdir().
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { sharedCasesDir } from '../../conformance/harness/case-dirs';
import { CorpusEntry, FuzzFailure, FuzzJob, FuzzMessage, fuzzInput } from './fuzz-worker';

const REPO = path.resolve(__dirname, '../../..');
/** The shared kit's cases join the corpus where ../shared/conformance is beside the repository. */
const SHARED_CASES = sharedCasesDir();
const OWN_CASES = path.join(REPO, 'test/conformance/cases');
const FILENAME = 'fuzz.Dockerfile';
const PROGRESS_DEADLINE_MS = 5_000;
/** Loading TypeScript and transpiling the frontend in the worker takes a while on a busy machine. */
const STARTUP_DEADLINE_MS = 30_000;
/** Enough to hold any sane input's graph; a blow-up hits it and is reported instead of swapping. */
const WORKER_HEAP_MB = 384;

const DEFAULT_SEED = 1_000_003;
const BB = 'localhost:5000/busybox:latest';

/** Rich Dockerfiles that reach what the conformance cases do not; some use what buildd refuses. */
const INLINE: Record<string, string> = {
  'multi-stage': `# a comment before anything
ARG BASE=${BB}
ARG VERSION=1.0
FROM \${BASE} AS build
ARG VERSION
ENV OUT=/out V=\${VERSION:-none}
RUN mkdir -p $OUT && echo "$V" > $OUT/version
WORKDIR \${OUT}/sub
COPY --chown=1:2 --chmod=0644 a.txt b.txt ./

FROM build AS test
RUN ["sh", "-c", "test -f /out/version"]

FROM ${BB}
COPY --from=build /out /opt/out
COPY --from=0 /out/version /version
CMD ["cat", "/version"]
`,
  'expansion-forms': `FROM ${BB}
ARG A
ARG B=bee
ENV X=\${A:-default} Y=\${A-unset} Z=\${B:+set} W=\${B+plus} ESC=\\$HOME Q="\${B}" S='\${B}'
ENV LEGACY value with \${B} spaces
LABEL one=\${X} "two words"="\${Y}" three='\$literal'
WORKDIR /w/\${B:-x}/\${A:-y}
USER \${B}:\${A:-0}
EXPOSE 80 \${PORT:-8080}/tcp 53/udp 1000-1010
COPY \${B}.txt /dest/\${Z}/
`,
  heredocs: `# syntax=docker/dockerfile:1.4
FROM ${BB}
RUN <<EOF
echo hello > /hello
echo "\${HOME}" >> /hello
EOF
RUN <<-EOT bash
	set -e
	echo tabbed
	EOT
COPY <<EOF /etc/conf
key=value
EOF
RUN cat <<A <<B > /two
a
A
b
B
`,
  'json-forms': `FROM ${BB}
RUN ["echo", "a \\"quoted\\" word", "\\u00e9\\n"]
CMD ["sh", "-c", "echo $HOME"]
ENTRYPOINT ["/bin/sh", "-c"]
SHELL ["/bin/sh", "-xc"]
RUN [ "broken json", ]
CMD [not json]
VOLUME ["/data", "/logs"]
`,
  flags: `FROM ${BB} AS one
RUN --mount=type=cache,target=/root/.cache --network=none echo cached
RUN --mount=type=secret,id=token,required=true cat /run/secrets/token
COPY --from=one --chown=app:app --chmod=755 /bin/busybox /b
COPY --link --from=one /etc/passwd /p
ADD --chown=0:0 https://example.com/file.tar.gz /x/
COPY --unknown=1 a b
FROM --platform=linux/amd64 ${BB}
`,
  onbuild: `FROM ${BB} AS parent
ONBUILD RUN echo triggered > /t
ONBUILD COPY . /app
FROM parent
FROM localhost:5000/onbuild:latest
RUN true
`,
  healthcheck: `FROM ${BB}
HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=3 CMD wget -q -O- http://localhost/ || exit 1
HEALTHCHECK NONE
HEALTHCHECK CMD ["true"]
STOPSIGNAL SIGKILL
MAINTAINER someone <someone@example.com>
`,
  'escape-directive': `# escape=\`
FROM ${BB}
RUN echo one \`
    two \`
    three
COPY C:\\path\\to\\file C:\\dest\\
ENV P=C:\\Program` + ` Files
`,
  continuations: `FROM ${BB}
RUN echo a \\
# a comment inside the continuation
    b \\

    c \\
    # indented comment
    d
ENV A=1 \\
    B=2 \\
    C=3
LABEL x=1 \\
`,
  unicode: `FROM ${BB}
LABEL description="héllo wörld — ✓ 日本語" emoji="😀"
ENV GREETING="Grüße" \\u00e9=bad
RUN echo "ünïcödé" > /ü.txt
WORKDIR /données
COPY fichier-é.txt /λ/
USER ñobody
`,
  'args-and-targets': `ARG STAGE=build
ARG IMAGE
FROM \${IMAGE:-${BB}} AS base
ARG STAGE
ARG TARGETARCH TARGETOS
RUN echo $TARGETARCH $TARGETOS $BUILDPLATFORM > /platform
FROM base AS build
ARG STAGE=\${STAGE}-x
ENV STAGE=$STAGE
FROM \${STAGE}
FROM Base
FROM base AS Build
`,
  oddities: `from ${BB} as lower
run echo lowercase keywords
Env a=1
   WORKDIR    /spaced
CMD
ENTRYPOINT []
EXPOSE
USER
COPY onlyone
COPY --from= a b
ARG =novalue
ENV =x
LABEL "unterminated=1
RUN echo "unterminated
WORKDIR \${
`,
};

function readCases(root: string): CorpusEntry[] {
  if (!fs.existsSync(root)) {
    throw new Error(`Cannot build the fuzz corpus: ${root} does not exist`);
  }
  const entries: CorpusEntry[] = [];
  for (const name of fs.readdirSync(root).sort()) {
    const file = path.join(root, name, 'Dockerfile');
    if (fs.existsSync(file)) entries.push({ origin: path.relative(path.dirname(REPO), file), text: fs.readFileSync(file, 'utf8') });
  }
  if (entries.length === 0) throw new Error(`Cannot build the fuzz corpus: no */Dockerfile under ${root}`);
  return entries;
}

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`Cannot fuzz: ${name}=${raw} is not a non-negative integer`);
  return n;
}

/** Writes an input where a person can open it, and says how it was made. */
function saveInput(job: FuzzJob, index: number, what: string): string {
  const input = fuzzInput(job.corpus, job.seed, index);
  const file = path.join(os.tmpdir(), `buildd-fuzz-${job.seed}-${index}.Dockerfile`);
  fs.writeFileSync(file, input.text);
  const preview = input.text.length > 2000 ? input.text.slice(0, 2000) + `\n… (${input.text.length} chars in all)` : input.text;
  return [
    `input #${index} (seed ${job.seed}) ${what}`,
    `  from ${input.origin}, mutations: ${input.mutations.join('; ') || 'none'}`,
    `  written to ${file}`,
    '  ---8<---',
    preview,
    '  ---8<---',
  ].join('\n');
}

interface RunOutcome {
  failures: FuzzFailure[];
  /** set when the worker stopped before the end: a hang, a heap blow-up, or a crash */
  stopped?: { index: number; why: string };
  results: number;
  errors: number;
}

/** Runs the job in a worker; resolves when it is done or has been stopped at an input. */
function runWorker(job: FuzzJob): Promise<RunOutcome> {
  // The worker runs the TypeScript sources as they are now, compiled on load like ts-jest
  // does, so that it checks the same frontend as the rest of the unit tests.
  const bootstrap = `
    const { createRequire } = require('node:module');
    const { workerData } = require('node:worker_threads');
    const req = createRequire(workerData.entry);
    const ts = req('typescript');
    const fs = req('node:fs');
    // Stacks of failures should name .ts lines, as they do in the rest of the unit tests.
    process.setSourceMapsEnabled(true);
    req.extensions['.ts'] = (mod, filename) => {
      const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
        fileName: filename,
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, inlineSourceMap: true, inlineSources: true },
      });
      mod._compile(out.outputText, filename);
    };
    req(workerData.entry);
  `;
  const worker = new Worker(bootstrap, {
    eval: true,
    workerData: { ...job, entry: path.join(__dirname, 'fuzz-worker.ts') },
    resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
    stdout: true,
    stderr: true,
  });
  return new Promise((resolve) => {
    const outcome: RunOutcome = { failures: [], results: 0, errors: 0 };
    let current = -1;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (stopped?: RunOutcome['stopped']): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      if (stopped) outcome.stopped = stopped;
      void worker.terminate().then(() => resolve(outcome));
    };
    const arm = (ms: number): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => finish({ index: current, why: `made no progress for ${ms} ms (a hang)` }), ms);
    };
    arm(STARTUP_DEADLINE_MS);
    worker.on('message', (m: FuzzMessage) => {
      switch (m.kind) {
        case 'ready':
          arm(PROGRESS_DEADLINE_MS);
          break;
        case 'start':
          current = m.index;
          arm(PROGRESS_DEADLINE_MS);
          break;
        case 'failure':
          outcome.failures.push(m.failure);
          break;
        case 'done':
          outcome.results = m.results;
          outcome.errors = m.errors;
          finish();
          break;
      }
    });
    worker.on('error', (err: Error) => {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ERR_WORKER_OUT_OF_MEMORY' ? `exhausted the worker's ${WORKER_HEAP_MB} MB heap` : `crashed the worker: ${err.stack ?? err.message}`;
      finish({ index: current, why });
    });
    worker.on('exit', (code) => finish(settled ? undefined : { index: current, why: `ended the worker with exit code ${code}` }));
  });
}

describe('Dockerfile frontend fuzzing', () => {
  // A fixed default keeps CI deterministic; FUZZ_SEED=random explores new inputs on a laptop.
  const seed = process.env.FUZZ_SEED === 'random' ? Date.now() % 0x7fffffff : envInt('FUZZ_SEED', DEFAULT_SEED);
  const rounds = envInt('FUZZ_ROUNDS', 2000);

  test(`every mutated Dockerfile ends in a result or a BuildError naming its line, and finishes (seed ${seed}, ${rounds} inputs)`, async () => {
    const corpus = [
      ...(SHARED_CASES ? readCases(SHARED_CASES) : []),
      ...readCases(OWN_CASES),
      ...Object.entries(INLINE).map(([name, text]) => ({ origin: `inline:${name}`, text })),
    ];
    const job: FuzzJob = { marker: 'buildd-frontend-fuzz', corpus, seed, rounds, filename: FILENAME };
    // The seed goes to the log even on success: a later failure with the same code reruns it.
    console.log(`frontend fuzz: FUZZ_SEED=${seed} FUZZ_ROUNDS=${rounds}, ${corpus.length} corpus files${SHARED_CASES ? '' : ' (no ../shared/conformance/cases: the shared cases are not in the corpus)'}`);

    const outcome = await runWorker(job);

    const report: string[] = [];
    if (outcome.stopped) report.push(saveInput(job, outcome.stopped.index, outcome.stopped.why));
    for (const f of outcome.failures.slice(0, 10)) {
      report.push(saveInput(job, f.index, `threw ${f.thrown}: ${f.message}\n${f.stack ?? ''}`));
    }
    if (outcome.failures.length > 10) report.push(`… and ${outcome.failures.length - 10} more failing inputs`);
    if (report.length > 0) {
      throw new Error(`Frontend fuzzing failed (rerun with FUZZ_SEED=${seed} FUZZ_ROUNDS=${rounds}):\n\n${report.join('\n\n')}`);
    }
    expect(outcome.results + outcome.errors).toBe(rounds);
  }, 120_000);
});
