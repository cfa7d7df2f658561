import { redactGitUrl } from '../../../buildd/worker/git-remote';

describe('redactGitUrl', () => {
  test('a password or token in the URL becomes xxxxx; a user name alone is kept', () => {
    expect(redactGitUrl('https://u:secret@example.com/r.git')).toBe('https://u:xxxxx@example.com/r.git');
    expect(redactGitUrl('https://:tok@example.com/r.git')).toBe('https://:xxxxx@example.com/r.git');
    expect(redactGitUrl('ssh://git@example.com:2222/r.git')).toBe('ssh://git@example.com:2222/r.git');
    expect(redactGitUrl('git@example.com:moby/buildkit.git')).toBe('git@example.com:moby/buildkit.git');
    expect(redactGitUrl('https://example.com/a@b/r.git')).toBe('https://example.com/a@b/r.git');
  });
});
