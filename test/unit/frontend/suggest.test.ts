import { didYouMean, distance, suggest } from '../../../frontend/suggest';

describe('suggest', () => {
  it('finds a near candidate, one edit for short words, two for long ones, a swap counting once', () => {
    expect(suggest('RUNN', ['RUN', 'COPY'])).toBe('RUN');
    expect(suggest('COYP', ['RUN', 'COPY'])).toBe('COPY');
    expect(suggest('--chmdo', ['--chmod', '--chown'])).toBe('--chmod');
    expect(suggest('--cp', ['--chmod'])).toBeUndefined();
    expect(suggest('RUN', ['RUN'])).toBeUndefined();
    expect(didYouMean('workdri', ['WORKDIR'])).toBe(': did you mean WORKDIR?');
    expect(distance('ab', 'ba')).toBe(1);
  });

  it('gives up on a word far longer than every candidate without comparing it (a 160 kB line is one "word")', () => {
    expect(suggest('x='.padEnd(160_000, 'a'), ['RUN', 'COPY', 'HEALTHCHECK'])).toBeUndefined();
  });
});
