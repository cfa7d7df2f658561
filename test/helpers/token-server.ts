import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';

export const TOKEN_SERVICE = 'buildd-test-registry';
export const TOKEN_ISSUER = 'buildd-test-issuer';

/**
 * A token server for the distribution registry's `auth.token`: it signs JWTs (RS256, with the
 * certificate in `x5c`) that the real registry verifies against `certPath`. Valid Basic
 * credentials get the actions they ask for; anonymous requests get a token with no access, as
 * Docker Hub does; wrong credentials get a 401.
 *
 * Lifecycle: started by `startTokenServer`, serves until `stop`.
 */
export interface TokenServer {
  realm: string;
  certPath: string;
  /** Every token request seen: its scopes and whether it carried valid credentials. */
  requests: { scopes: string[]; authenticated: boolean }[];
  stop(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** `tls`: serve HTTPS with this certificate and key (PEM files), e.g. from makeCerts. */
export async function startTokenServer(dir: string, user: string, pass: string, tls?: { certificate: string; key: string }): Promise<TokenServer> {
  const keyPath = path.join(dir, 'token-key.pem');
  const certPath = path.join(dir, 'token-cert.pem');
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=buildd-test-token']);
  const key = createPrivateKey(await fsp.readFile(keyPath));
  const certDer = new X509Certificate(await fsp.readFile(certPath)).raw.toString('base64');
  const requests: TokenServer['requests'] = [];
  const expected = 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64');

  const server = (tls
    ? createHttpsServer({ cert: await fsp.readFile(tls.certificate), key: await fsp.readFile(tls.key) })
    : createServer()).on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const scopes = url.searchParams.getAll('scope');
    const given = req.headers.authorization;
    const authenticated = given === expected;
    requests.push({ scopes, authenticated });
    if (given !== undefined && !authenticated) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const access = authenticated
      ? scopes.map((s) => s.split(':')).filter((p) => p.length === 3 && p[0] === 'repository').map(([type, name, actions]) => ({ type, name, actions: actions.split(',') }))
      : [];
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certDer] }));
    const claims = b64url(JSON.stringify({
      iss: TOKEN_ISSUER, sub: authenticated ? user : '', aud: url.searchParams.get('service') ?? '',
      exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access,
    }));
    const signature = b64url(sign('sha256', Buffer.from(`${header}.${claims}`), key));
    // `access_token` rather than `token`, to exercise the other field clients must accept.
    res.writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ access_token: `${header}.${claims}.${signature}`, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `${tls ? 'https' : 'http'}://127.0.0.1:${port}/token`,
    certPath,
    requests,
    stop: () => new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((err) => (err ? reject(err) : resolve()));
    }),
  };
}
