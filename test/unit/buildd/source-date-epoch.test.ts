import { sourceDateEpoch } from '../../../buildd/source-date-epoch';

describe('sourceDateEpoch', () => {
  it('reads the build arg, and the output attribute over it (empty: none), as BuildKit does', () => {
    expect(sourceDateEpoch(undefined, {})).toBeUndefined();
    expect(sourceDateEpoch('1700000000', {})).toBe(1700000000);
    expect(sourceDateEpoch('1700000000', { 'source-date-epoch': '0' })).toBe(0);
    expect(sourceDateEpoch('1700000000', { 'source-date-epoch': '' })).toBeUndefined();
    expect(sourceDateEpoch('', {})).toBeUndefined();
    expect(sourceDateEpoch('+42', {})).toBe(42);
  });

  it.each([
    ['yesterday', {}, 'Cannot use build arg SOURCE_DATE_EPOCH: "yesterday" is not a number of seconds since 1970'],
    [undefined, { 'source-date-epoch': '1.5' }, 'Cannot use --output attribute source-date-epoch: "1.5" is not a number of seconds since 1970'],
    [undefined, { 'source-date-epoch': '99999999999999999' }, 'Cannot use --output attribute source-date-epoch: "99999999999999999" is not a number of seconds since 1970'],
  ])('refuses %j %j', (frontend, output, message) => {
    expect(() => sourceDateEpoch(frontend, output)).toThrow(message);
  });
});
