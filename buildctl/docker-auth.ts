import type { CredentialSource, Credentials } from '../store/docker-credentials';

/**
 * The user's `docker login`, lent to the daemon when it asks (BuildKit's auth provider):
 * `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`) with its auths, credsStore and
 * credHelpers, loaded only when the first request comes (a build that touches no registry
 * loads nothing).
 *
 * Lifecycle: one per buildctl run; `lookup` per request of the daemon.
 */
export class DockerAuthProvider implements CredentialSource {
  private source: Promise<CredentialSource> | undefined;

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  async lookup(host: string): Promise<Credentials | undefined> {
    this.source ??= import('../store/docker-credentials').then((m) => m.loadDockerCredentials(this.env));
    return (await this.source).lookup(host);
  }
}
