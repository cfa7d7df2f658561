import { defaultConfigPath, SYSTEM_CONFIG_FILE } from '../../../../buildd/config-file/default-config-path';

describe('defaultConfigPath', () => {
  const home = '/home/dev';

  it('is /etc/buildd/buildd.toml for root', () => {
    expect(SYSTEM_CONFIG_FILE).toBe('/etc/buildd/buildd.toml');
    expect(defaultConfigPath(false, { euid: 0, env: { XDG_CONFIG_HOME: '/home/dev/.cfg' }, homedir: home })).toBe('/etc/buildd/buildd.toml');
  });

  it("is the user's $XDG_CONFIG_HOME/buildd/buildd.toml for a rootless daemon, as BuildKit's ~/.config/buildkit", () => {
    expect(defaultConfigPath(false, { euid: 1000, env: { XDG_CONFIG_HOME: '/home/dev/.cfg' }, homedir: home })).toBe('/home/dev/.cfg/buildd/buildd.toml');
    expect(defaultConfigPath(false, { euid: 1000, env: {}, homedir: home })).toBe('/home/dev/.config/buildd/buildd.toml');
    // XDG: a relative value is ignored
    expect(defaultConfigPath(false, { euid: 1000, env: { XDG_CONFIG_HOME: 'cfg' }, homedir: home })).toBe('/home/dev/.config/buildd/buildd.toml');
  });

  it('is the user\'s file as root of a user namespace: --rootless, or the process rootlesskit started', () => {
    expect(defaultConfigPath(true, { euid: 0, env: {}, homedir: home })).toBe('/home/dev/.config/buildd/buildd.toml');
    expect(defaultConfigPath(false, { euid: 0, env: { BUILDD_ROOTLESS_CHILD: '1' }, homedir: home })).toBe('/home/dev/.config/buildd/buildd.toml');
  });
});
