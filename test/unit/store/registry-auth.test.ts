import { parseChallenge } from '../../../store/registry-auth';

describe('parseChallenge', () => {
  test('bearer with quoted realm, service and scope', () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push"'))
      .toEqual({ scheme: 'bearer', realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull,push' });
  });

  test('bearer with unquoted values and spaces', () => {
    expect(parseChallenge('bearer realm=http://127.0.0.1:1/token, service=svc')).toEqual({ scheme: 'bearer', realm: 'http://127.0.0.1:1/token', service: 'svc', scope: undefined });
  });

  test('basic, with or without a realm', () => {
    expect(parseChallenge('Basic realm="test"')).toEqual({ scheme: 'basic', realm: 'test' });
    expect(parseChallenge('Basic')).toEqual({ scheme: 'basic', realm: undefined });
  });

  test('bearer without realm and unknown schemes are not understood', () => {
    expect(parseChallenge('Bearer service="x"')).toBeUndefined();
    expect(parseChallenge('Negotiate abc')).toBeUndefined();
    expect(parseChallenge('')).toBeUndefined();
  });
});
