import type { ProgressEvent } from '../../../buildd/builder';
import { failureSummary } from '../../../buildctl/failure-summary';
import { PlainRenderer } from '../../../buildctl/progress-plain';
import { RawJsonRenderer } from '../../../buildctl/progress-rawjson';
import type { RenderTarget } from '../../../buildctl/progress-renderer';
import { CLEAR_LINE, TtyRenderer, cursorUp } from '../../../buildctl/progress-tty';
import { BuildError } from '../../../solver/build-error';

/** A render target with a hand-moved clock. */
function target(): RenderTarget & { text: string; clock: number } {
  const t = {
    text: '',
    clock: 1_000_000,
    columns: 60,
    write(s: string) {
      t.text += s;
    },
    now: () => t.clock,
  };
  return t;
}

const T0 = 1_000_000;
const vertex = (digest: string, name: string, extra: Partial<Extract<ProgressEvent, { type: 'vertex' }>> = {}): ProgressEvent => ({
  type: 'vertex',
  digest,
  name,
  cached: false,
  ...extra,
});
const log = (v: string, text: string): ProgressEvent => ({ type: 'log', vertex: v, stream: 1, data: Buffer.from(text) });

describe('plain progress', () => {
  it('prints BuildKit-style blocks: header, timed log lines, DONE, CACHED, ERROR', () => {
    const out = target();
    const r = new PlainRenderer(out);
    r.event(vertex('a', '[base 1/1] FROM busybox', { started: T0, completed: T0, cached: true }));
    r.event(vertex('b', '[build 2/2] RUN echo hello', { started: T0 }));
    out.clock = T0 + 123;
    r.event(log('b', 'hel'));
    r.event(log('b', 'lo\nsecond line\n'));
    r.event(vertex('b', '[build 2/2] RUN echo hello', { started: T0, completed: T0 + 400 }));
    r.event(vertex('c', '[build 3/3] RUN false', { started: T0 + 400 }));
    out.clock = T0 + 500;
    r.event(log('c', 'partial'));
    r.event(vertex('c', '[build 3/3] RUN false', { started: T0 + 400, completed: T0 + 500, error: 'exit code: 1' }));
    r.end();
    expect(out.text).toBe(
      [
        '#1 [base 1/1] FROM busybox',
        '#1 CACHED',
        '',
        '#2 [build 2/2] RUN echo hello',
        '#2 0.123 hello',
        '#2 0.123 second line',
        '#2 DONE 0.4s',
        '',
        '#3 [build 3/3] RUN false',
        '#3 ERROR: exit code: 1',
        '#3 0.100 partial',
        '',
      ].join('\n'),
    );
  });

  it('repeats a header when output of another step came in between', () => {
    const out = target();
    const r = new PlainRenderer(out);
    r.event(vertex('a', 'A', { started: T0 }));
    r.event(vertex('b', 'B', { started: T0 }));
    r.event(log('a', 'x\n'));
    expect(out.text).toBe('#1 A\n\n#2 B\n\n#1 A\n#1 0.000 x\n');
  });

  it('prints warnings with their Dockerfile line', () => {
    const out = target();
    new PlainRenderer(out).event({ type: 'warning', message: 'FROM without tag', range: { file: 'Dockerfile', startLine: 3, endLine: 3 } });
    expect(out.text).toBe('WARNING: FROM without tag (Dockerfile:3)\n');
  });
});

describe('tty progress', () => {
  it('draws a frame, then redraws it in place with cursor-up and line clears', () => {
    const out = target();
    const r = new TtyRenderer(out);
    r.event(vertex('a', '[1/2] FROM busybox', { started: T0, completed: T0, cached: true }));
    r.event(vertex('b', '[2/2] RUN make', { started: T0 }));
    out.clock = T0 + 1500;
    r.event(log('b', 'compiling\n'));
    r.render();
    const first = out.text;
    expect(first.startsWith(CLEAR_LINE + '[+] Building 1.5s (1/2)\n')).toBe(true);
    expect(first).toContain(' => CACHED [1/2] FROM busybox');
    expect(first).toContain(' => => # compiling');
    expect(first).not.toContain('\x1b[4A');
    const firstLines = first.split('\n').length - 1;

    out.text = '';
    r.event(vertex('b', '[2/2] RUN make', { started: T0, completed: T0 + 2000 }));
    out.clock = T0 + 2000;
    r.end();
    // back over the 4 lines drawn before; the log tail is gone now the step is done, so the
    // leftover line is cleared and the cursor comes back up
    expect(firstLines).toBe(4);
    expect(out.text.startsWith(cursorUp(4) + CLEAR_LINE + '[+] Building 2.0s (2/2) FINISHED\n')).toBe(true);
    expect(out.text.endsWith(`${CLEAR_LINE}\n${cursorUp(1)}`)).toBe(true);
    expect(out.text).toMatch(/ => \[2\/2\] RUN make +2\.0s\n/);
  });

  it('strips control characters from step output so they cannot break the redraw', () => {
    const out = target();
    const r = new TtyRenderer(out);
    r.event(vertex('a', 'A', { started: T0 }));
    r.event(log('a', 'evil\x1b[2Jline\n'));
    r.end();
    expect(out.text).toContain(' => => # evil [2Jline');
  });
});

describe('rawjson progress', () => {
  it('writes one JSON object per event, log data in base64', () => {
    const out = target();
    const r = new RawJsonRenderer(out);
    r.event(vertex('a', 'A', { started: T0 }));
    r.event(log('a', 'hi\n'));
    const lines = out.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      { type: 'vertex', digest: 'a', name: 'A', cached: false, started: T0 },
      { type: 'log', vertex: 'a', stream: 1, data: Buffer.from('hi\n').toString('base64') },
    ]);
  });
});

describe('failure summary', () => {
  it('names the failed step with its last 10 output lines and the exit code', () => {
    const out = target();
    const r = new PlainRenderer(out);
    r.event(vertex('b', '[build 2/2] RUN ./test.sh', { started: T0 }));
    for (let i = 1; i <= 12; i++) r.event(log('b', `line ${i}\n`));
    const err = new BuildError('failed-precondition', 'process "/bin/sh -c ./test.sh" did not complete successfully', { vertex: 'b', exitCode: 2 });
    const text = failureSummary(err, r.state);
    expect(text).toBe(
      [
        '------',
        ' > [build 2/2] RUN ./test.sh:',
        ...Array.from({ length: 10 }, (_, i) => `0.000 line ${i + 3}`),
        '------',
        'ERROR: failed to solve: process "/bin/sh -c ./test.sh" did not complete successfully: exit code: 2',
        '',
      ].join('\n'),
    );
    expect(text).not.toMatch(/at .*\.ts:\d+/);
  });

  it('prints the Dockerfile range of a frontend error', () => {
    const err = new BuildError('invalid-argument', 'unknown instruction: FORM', { range: { file: 'Dockerfile', startLine: 1, endLine: 1 } });
    expect(failureSummary(err, undefined)).toBe('Dockerfile:1\nERROR: failed to solve: unknown instruction: FORM\n');
  });
});
