import type { SessionAttachables } from '../../solver/worker';
import type { CredentialSource, Credentials } from '../../store/docker-credentials';
import type { RegistryClient } from '../../store/registry-client';

/**
 * Credentials of a build whose client forwards its own (BuildKit's auth session): the client's
 * answer first, the daemon's config.json for hosts the client has nothing for.
 */
class ForwardedCredentials implements CredentialSource {
  constructor(
    private readonly session: SessionAttachables,
    private readonly daemon: CredentialSource | undefined,
  ) {}

  async lookup(registry: string): Promise<Credentials | undefined> {
    return (await this.session.registryCredentials(registry)) ?? this.daemon?.lookup(registry);
  }
}

/**
 * Which RegistryClient a build talks to registries through: the daemon's own, or, for a client
 * that forwards credentials, one client per build with them, so that a token one user's login
 * fetched never serves another user's build. Pulls (the worker), base image resolution and
 * pushes of one build share it.
 *
 * Lifecycle: one per daemon, beside the daemon's RegistryClient; `release` when a build ends
 * closes what `forSession` made for it.
 */
export class SessionRegistries {
  private readonly clients = new WeakMap<SessionAttachables, RegistryClient>();

  constructor(
    readonly daemon: RegistryClient,
    private readonly daemonCredentials?: CredentialSource,
  ) {}

  forSession(session: SessionAttachables | undefined): RegistryClient {
    if (!session?.forwardsCredentials) return this.daemon;
    let client = this.clients.get(session);
    if (!client) {
      client = this.daemon.withCredentials(new ForwardedCredentials(session, this.daemonCredentials));
      this.clients.set(session, client);
    }
    return client;
  }

  async release(session: SessionAttachables | undefined): Promise<void> {
    const client = session && this.clients.get(session);
    if (!client) return;
    this.clients.delete(session);
    await client.close();
  }
}
