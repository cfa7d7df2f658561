import { execFile } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { resolveConfig } from '../../../buildd/run-daemon';
import { parseAddress } from '../../../buildd/api/address';
import { MIN_SUBIDS } from '../../../buildd/rootless/rootlesskit-reexec';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..', '..');
const DIR = path.join(REPO, 'deploy', 'kubernetes');

/**
 * The Kubernetes manifests, checked offline against zod schemas of the fields we rely on (the
 * API server would refuse a wrong type or a missing required field the same way), and against
 * each other and buildd itself: the container's args are flags buildd accepts, probes reach the
 * health address, TLS files are keys of the Secret create-secret.sh makes, selectors match.
 */
const labels = z.record(z.string());
const probe = z.object({ grpc: z.object({ port: z.number().int(), service: z.string().optional() }).strict(), initialDelaySeconds: z.number().int().optional(), periodSeconds: z.number().int().optional(), failureThreshold: z.number().int().optional() }).strict();
const container = z
  .object({
    name: z.string(),
    image: z.string().regex(/^[a-z0-9.-]+(:\d+)?\/[a-z0-9./-]+:[\w.-]+$/),
    args: z.array(z.string()),
    ports: z.array(z.object({ name: z.string().max(15), containerPort: z.number().int() }).strict()),
    readinessProbe: probe,
    livenessProbe: probe,
    securityContext: z
      .object({
        seccompProfile: z.object({ type: z.enum(['Unconfined', 'RuntimeDefault', 'Localhost']) }).strict(),
        appArmorProfile: z.object({ type: z.enum(['Unconfined', 'RuntimeDefault', 'Localhost']) }).strict(),
        procMount: z.enum(['Default', 'Unmasked']).optional(),
        allowPrivilegeEscalation: z.boolean(),
      })
      .strict(),
    resources: z.object({ requests: z.record(z.string()), limits: z.record(z.string()) }).strict(),
    volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string(), readOnly: z.boolean().optional() }).strict()),
  })
  .strict();
const podSpec = z
  .object({
    terminationGracePeriodSeconds: z.number().int(),
    hostUsers: z.boolean().optional(),
    securityContext: z.object({ runAsUser: z.number().int(), runAsGroup: z.number().int(), fsGroup: z.number().int(), fsGroupChangePolicy: z.enum(['OnRootMismatch', 'Always']) }).strict(),
    containers: z.array(container).length(1),
    volumes: z.array(z.object({ name: z.string(), secret: z.object({ secretName: z.string(), defaultMode: z.number().int() }).strict().optional(), emptyDir: z.object({}).strict().optional() }).strict()),
  })
  .strict();
const workload = z.object({
  apiVersion: z.literal('apps/v1'),
  kind: z.enum(['Deployment', 'StatefulSet']),
  metadata: z.object({ name: z.string(), labels }).strict(),
  spec: z
    .object({
      serviceName: z.string().optional(),
      replicas: z.number().int().min(1),
      selector: z.object({ matchLabels: labels }).strict(),
      template: z.object({ metadata: z.object({ labels, annotations: z.record(z.string()).optional() }).strict(), spec: podSpec }).strict(),
      volumeClaimTemplates: z
        .array(z.object({ metadata: z.object({ name: z.string() }).strict(), spec: z.object({ accessModes: z.array(z.string()), resources: z.object({ requests: z.object({ storage: z.string() }).strict() }).strict() }).strict() }).strict())
        .optional(),
    })
    .strict(),
});
const service = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Service'),
  metadata: z.object({ name: z.string(), labels }).strict(),
  spec: z.object({ clusterIP: z.literal('None').optional(), selector: labels, ports: z.array(z.object({ name: z.string(), port: z.number().int(), targetPort: z.string() }).strict()) }).strict(),
});
const secret = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Secret'),
  metadata: z.object({ name: z.string(), labels }).strict(),
  type: z.literal('Opaque'),
  data: z.record(z.string().regex(/^[A-Za-z0-9+/]+=*$/)),
});

/**
 * What the image (the root Dockerfile on deploy/image/base.Dockerfile) gives rootless buildd:
 * its USER, the ids /etc/subuid and /etc/subgid give that user by name or uid, and whether the
 * base installs Debian's uidmap (setuid newuidmap and newgidmap). Read from the Dockerfiles'
 * text: building the image needs a registry and network access.
 */
function imageFacts(): { user: { uid: number; gid: number }; subids: { subuid: number; subgid: number }; uidmap: boolean } {
  const dockerfile = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
  const base = readFileSync(path.join(REPO, 'deploy', 'image', 'base.Dockerfile'), 'utf8');
  const users = [...dockerfile.matchAll(/^USER (\d+):(\d+)$/gm)];
  const last = users[users.length - 1];
  const user = { uid: Number(last?.[1]), gid: Number(last?.[2]) };
  const name = new RegExp(`echo '([a-z_][a-z0-9_-]*):x:${user.uid}:${user.gid}:`).exec(dockerfile)?.[1];
  const count = (file: string): number =>
    [...dockerfile.matchAll(new RegExp(`echo '([^':]+):(\\d+):(\\d+)' > ${file.replace(/\//g, '\\/')}`, 'g'))]
      .filter((m) => m[1] === name || m[1] === String(user.uid))
      .reduce((n, m) => n + Number(m[3]), 0);
  return { user, subids: { subuid: count('/etc/subuid'), subgid: count('/etc/subgid') }, uidmap: /apt-get install[^\n]*(\\\n[^\n]*)*\buidmap\b/.test(base) };
}
const image = imageFacts();

function documents(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'));
  for (const d of docs) expect(d.errors).toEqual([]);
  return docs.map((d) => d.toJSON() as unknown);
}

let certs: string;
let secretDoc: z.infer<typeof secret>;

beforeAll(async () => {
  certs = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-k8s-'));
  await run('bash', [path.join(REPO, 'certs', 'make-certs.sh'), certs, '--san', 'DNS:buildd']);
  const { stdout } = await run('bash', [path.join(DIR, 'create-secret.sh'), certs]);
  const docs = parseAllDocuments(stdout);
  expect(docs).toHaveLength(1);
  secretDoc = secret.parse(docs[0]?.toJSON());
}, 60_000);

afterAll(async () => {
  await fsp.rm(certs, { recursive: true, force: true });
});

test('create-secret.sh makes the Secret the manifests mount, holding the daemon files byte for byte', async () => {
  expect(secretDoc.metadata.name).toBe('buildd-certs');
  for (const f of ['ca.pem', 'cert.pem', 'key.pem']) {
    expect(Buffer.from(secretDoc.data[f] as string, 'base64')).toEqual(await fsp.readFile(path.join(certs, 'daemon', f)));
  }
  await expect(run('bash', [path.join(DIR, 'create-secret.sh'), path.join(certs, 'nothing-here')])).rejects.toMatchObject({ stderr: expect.stringMatching(/is missing \(run certs\/make-certs\.sh/) });
});

describe.each([
  ['deployment.rootless.yaml', 'Deployment'],
  ['statefulset.rootless.yaml', 'StatefulSet'],
])('%s', (file, kind) => {
  const docs = documents(file);
  const w = workload.parse(docs[0]);
  const services = docs.slice(1).map((d) => service.parse(d));
  const pod = w.spec.template.spec;
  const c = pod.containers[0] as z.infer<typeof container>;

  it(`is a ${kind} whose selector picks its own pods, and Services that reach them by port name`, () => {
    expect(w.kind).toBe(kind);
    expect(w.spec.template.metadata.labels).toMatchObject(w.spec.selector.matchLabels);
    expect(services.length).toBeGreaterThan(0);
    for (const s of services) {
      expect(w.spec.template.metadata.labels).toMatchObject(s.spec.selector);
      for (const p of s.spec.ports) expect(c.ports.map((cp) => cp.name)).toContain(p.targetPort);
    }
    if (kind === 'StatefulSet') {
      const headless = services.find((s) => s.metadata.name === w.spec.serviceName);
      expect(headless?.spec.clusterIP).toBe('None');
      expect(w.spec.volumeClaimTemplates?.map((v) => v.metadata.name)).toContain('state');
    }
  });

  it('runs buildd with flags it accepts: rootless, mutual TLS from the Secret, state on the volume, probes on the health address', async () => {
    const config = await resolveConfig(c.args);
    expect(config.rootless).toBe(true);
    const mounts = new Map(c.volumeMounts.map((m) => [m.name, m.mountPath]));
    const volumes = new Map(pod.volumes.map((v) => [v.name, v]));
    const certDir = mounts.get('certs') as string;
    expect(volumes.get('certs')?.secret?.secretName).toBe(secretDoc.metadata.name);
    for (const f of [config.tls.ca, config.tls.cert, config.tls.key]) {
      expect(path.dirname(f as string)).toBe(certDir);
      expect(Object.keys(secretDoc.data)).toContain(path.basename(f as string));
    }
    expect(config.root).toBe(mounts.get('state'));
    expect(volumes.has('state') || (w.spec.volumeClaimTemplates ?? []).some((v) => v.metadata.name === 'state')).toBe(true);
    const health = parseAddress(config.healthAddr as string);
    expect(health.kind).toBe('tcp');
    const port = health.kind === 'tcp' ? health.port : -1;
    expect(c.readinessProbe.grpc.port).toBe(port);
    expect(c.livenessProbe.grpc.port).toBe(port);
    expect(c.ports.map((p) => p.containerPort)).toEqual(expect.arrayContaining([port, ...config.addr.map((a) => (parseAddress(a) as { port: number }).port)]));
    // the kubelet waits for running builds to drain before it kills the pod
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.shutdownGraceMs);
    expect(pod.securityContext.runAsUser).not.toBe(0);
    // the API server refuses an unmasked /proc outside a user namespace of the pod's own
    if (c.securityContext.procMount === 'Unmasked') expect(pod.hostUsers).toBe(false);
    // fsGroup must not rewrite the owners and modes of the cache at each start
    expect(pod.securityContext.fsGroupChangePolicy).toBe('OnRootMismatch');
    // liveness asks for the service that stays SERVING while draining, readiness for the daemon
    expect(c.livenessProbe.grpc.service).toBe('liveness');
    expect(c.readinessProbe.grpc.service ?? '').toBe('');
  });

  it("runs rootless as BuildKit's examples do: in the node's user namespace, without a process sandbox, newuidmap allowed", async () => {
    const config = await resolveConfig(c.args);
    // a user namespace of the pod's own has 65536 ids: rootlesskit could not map 65536 more for
    // the pod's user (MIN_SUBIDS), so the pod must not ask for one
    expect(pod.hostUsers ?? true).toBe(true);
    // outside one, the runtime masks /proc (procMount Unmasked is refused) and the kernel
    // refuses each step a procfs of its own: the steps must share the daemon's
    expect(c.securityContext.procMount ?? 'Default').toBe('Default');
    if (config.rootless && (pod.hostUsers ?? true)) expect(config.noProcessSandbox).toBe(true);
    // rootlesskit and runc unshare namespaces and mount: refused by the runtime's default profiles
    expect(c.securityContext.seccompProfile.type).toBe('Unconfined');
    expect(c.securityContext.appArmorProfile.type).toBe('Unconfined');
    // newuidmap and newgidmap are setuid: no_new_privs would stop them
    expect(c.securityContext.allowPrivilegeEscalation).toBe(true);
    // the image's user and its subordinate ids are the pod's
    expect(image.user).toEqual({ uid: pod.securityContext.runAsUser, gid: pod.securityContext.runAsGroup });
    expect(image.subids.subuid).toBeGreaterThanOrEqual(MIN_SUBIDS);
    expect(image.subids.subgid).toBeGreaterThanOrEqual(MIN_SUBIDS);
    expect(image.uidmap).toBe(true);
  });
});
