import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../../solver/build-error';
import { defaultConflist, loadConflist, parseConflist } from '../../../../buildd/worker/network/cni-conflist';
import { describeCniFailure, firstIpv4, parseCniResult } from '../../../../buildd/worker/network/cni-result';

describe('defaultConflist', () => {
  it("is BuildKit's bridge network under buildd's name: loopback, then bridge buildd0 on 10.10.0.0/16 with masquerade and host-local leases in buildd's root", () => {
    expect(defaultConflist({ ipamDataDir: '/var/lib/buildd/net/ipam' })).toEqual({
      cniVersion: '1.0.0',
      name: 'buildd',
      plugins: [
        { type: 'loopback' },
        {
          type: 'bridge',
          bridge: 'buildd0',
          isGateway: true,
          isDefaultGateway: true,
          ipMasq: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: '10.10.0.0/16' }]], dataDir: '/var/lib/buildd/net/ipam' },
        },
      ],
    });
  });

  it('takes another bridge and subnet', () => {
    const list = defaultConflist({ ipamDataDir: '/d', bridge: 'br9', subnet: '10.99.0.0/24' });
    expect(list.plugins[1]).toMatchObject({ bridge: 'br9', ipam: { ranges: [[{ subnet: '10.99.0.0/24' }]] } });
  });

  it('passes its own validation', () => {
    const list = defaultConflist({ ipamDataDir: '/d' });
    expect(parseConflist(JSON.parse(JSON.stringify(list)), 'x')).toEqual(list);
  });
});

describe('parseConflist / loadConflist', () => {
  it("keeps every plugin's own keys", () => {
    const list = parseConflist({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge', bridge: 'b', mtu: 1400 }, { type: 'firewall' }] }, 'f');
    expect(list.plugins).toEqual([{ type: 'bridge', bridge: 'b', mtu: 1400 }, { type: 'firewall' }]);
  });

  it('turns a single-plugin .conf into a list of one', () => {
    expect(parseConflist({ cniVersion: '0.4.0', name: 'n', type: 'bridge', bridge: 'b' }, 'f')).toEqual({
      cniVersion: '0.4.0',
      name: 'n',
      plugins: [{ type: 'bridge', bridge: 'b' }],
    });
  });

  it('refuses a plugin type that is a path, not a file name in the binary directory', () => {
    expect(() => parseConflist({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: '../../bin/sh' }] }, 'cni.json')).toThrow(
      'Cannot load CNI config cni.json: plugins.0.type: a plugin type is a file name in the CNI binary directory',
    );
  });

  it('names the missing field', () => {
    expect(() => parseConflist({ cniVersion: '1.0.0', plugins: [{ type: 'bridge' }] }, 'cni.json')).toThrow('Cannot load CNI config cni.json: name: Required');
    expect(() => parseConflist({ cniVersion: '1.0.0', name: 'n', plugins: [] }, 'cni.json')).toThrow(/^Cannot load CNI config cni\.json: plugins: Array must contain at least 1/);
  });

  it('reads a file, and says why it cannot', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-conflist-'));
    try {
      const good = path.join(dir, 'a.conflist');
      await fsp.writeFile(good, JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'loopback' }] }));
      await expect(loadConflist(good)).resolves.toEqual({ cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'loopback' }] });
      const bad = path.join(dir, 'b.conflist');
      await fsp.writeFile(bad, '{');
      const err = await loadConflist(bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BuildError);
      expect((err as BuildError).code).toBe('invalid-argument');
      expect((err as BuildError).message).toMatch(new RegExp(`^Cannot load CNI config ${bad}: .*JSON`));
      await expect(loadConflist(path.join(dir, 'missing'))).rejects.toThrow(`Cannot load CNI config ${path.join(dir, 'missing')}: ENOENT`);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('CNI results and errors', () => {
  const bridgeResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'buildd0', mac: 'aa:bb:cc:dd:ee:ff' }, { name: 'veth1', mac: '11:22:33:44:55:66' }, { name: 'eth0', mac: '22:33:44:55:66:77', sandbox: '/x/ns' }],
    ips: [{ interface: 2, address: '10.10.0.5/16', gateway: '10.10.0.1' }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: {},
  };

  it("parses a bridge plugin's result and finds the step's address", () => {
    const parsed = parseCniResult(JSON.stringify(bridgeResult));
    expect(parsed).toEqual({ result: bridgeResult });
    if ('result' in parsed) expect(firstIpv4(parsed.result)).toBe('10.10.0.5');
  });

  it('keeps 0.4.0 fields (an address version) and finds no IPv4 where there is none', () => {
    const parsed = parseCniResult(JSON.stringify({ cniVersion: '0.4.0', ips: [{ version: '6', address: 'fd00::5/64' }] }));
    expect(parsed).toEqual({ result: { cniVersion: '0.4.0', ips: [{ version: '6', address: 'fd00::5/64' }] } });
    if ('result' in parsed) expect(firstIpv4(parsed.result)).toBeUndefined();
  });

  it('says what is wrong with a result that is not one', () => {
    expect(parseCniResult('not json')).toEqual({ problem: expect.stringMatching(/^its result is not JSON \(/) });
    expect(parseCniResult(JSON.stringify({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.5' }] }))).toEqual({
      problem: 'its result is invalid (ips.0.address: an address in CIDR notation)',
    });
    expect(parseCniResult(JSON.stringify({ ips: [] }))).toEqual({ problem: 'its result is invalid (cniVersion: Required)' });
  });

  it("turns a plugin's JSON error into its message, with details and code", () => {
    expect(describeCniFailure(JSON.stringify({ cniVersion: '1.0.0', code: 11, msg: 'no IP addresses available', details: 'range full' }), '', 'exit code 1')).toBe(
      'no IP addresses available: range full (CNI error code 11)',
    );
    expect(describeCniFailure('{"code":999,"msg":"failed to open netns"}', 'ignored', 'exit code 1')).toBe('failed to open netns (CNI error code 999)');
  });

  it('falls back to stderr, then to how the plugin ended', () => {
    expect(describeCniFailure('', 'panic: boom\nmore\n', 'exit code 2')).toBe('panic: boom more (exit code 2)');
    expect(describeCniFailure('', '', 'killed by SIGKILL')).toBe('killed by SIGKILL');
  });
});
