import { distance as editDistance } from '../../../../frontend/suggest';
import { suggestKey } from '../../../../buildd/config-file/suggest-key';

describe('suggestKey', () => {
  const oci = ['rootless', 'snapshotter', 'max-parallelism', 'cniConfigPath', 'cniBinaryPath', 'cniPoolSize', 'gc', 'gckeepstorage', 'gcpolicy'];

  it('counts insertions, deletions, substitutions and transpositions as one edit each', () => {
    expect(editDistance('', '')).toBe(0);
    expect(editDistance('abc', '')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('tls', 'tsl')).toBe(1);
    expect(editDistance('ca', 'abc')).toBe(3);
  });

  it('suggests the key one typo away', () => {
    expect(suggestKey('max-paralelism', oci)).toBe('max-parallelism');
    expect(suggestKey('snapshoter', oci)).toBe('snapshotter');
    expect(suggestKey('rootles', oci)).toBe('rootless');
    expect(suggestKey('gcpolcy', oci)).toBe('gcpolicy');
    expect(suggestKey('tsl', ['address', 'tls'])).toBe('tls');
  });

  it('takes the key in another case or with - and _ swapped as the same key', () => {
    expect(suggestKey('maxParallelism', oci)).toBe('max-parallelism');
    expect(suggestKey('max_parallelism', oci)).toBe('max-parallelism');
    expect(suggestKey('cni-pool-size', oci)).toBe('cniPoolSize');
    expect(suggestKey('GCKeepStorage', oci)).toBe('gckeepstorage');
  });

  it('suggests the closest of several', () => {
    expect(suggestKey('cniConfigPat', oci)).toBe('cniConfigPath');
    expect(suggestKey('cniBinaryPat', oci)).toBe('cniBinaryPath');
  });

  it('suggests nothing when no key is close', () => {
    expect(suggestKey('platforms', oci)).toBeUndefined();
    expect(suggestKey('containerd', ['oci'])).toBeUndefined();
    expect(suggestKey('x', ['gc'])).toBeUndefined();
    expect(suggestKey('anything', [])).toBeUndefined();
  });
});
