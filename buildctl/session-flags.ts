import { BuildError } from '../solver/build-error';
import { splitCsv } from './build-flags';

/** One `--secret`: where buildctl reads the value when the daemon asks for it. */
export type SecretSpec = { id: string; file: string } | { id: string; env: string };

/** One `--ssh`: an agent id and the agent sockets (or key files) behind it. */
export interface SshSpec {
  id: string;
  paths: string[];
}

/**
 * `--secret id=ID[,type=file|env][,src|source=FILE][,env=VAR]`, as BuildKit's buildctl reads
 * it: `type=env` takes the variable from `env=` (or `src=`); with neither src nor env, the
 * value is the variable ID when it is set, else the file ID.
 */
export function parseSecret(text: string, env: NodeJS.ProcessEnv): SecretSpec {
  let id: string | undefined;
  let type: 'file' | 'env' | undefined;
  let src: string | undefined;
  let envName: string | undefined;
  for (const field of splitCsv(text)) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new BuildError('invalid-argument', `Cannot parse --secret ${text}: "${field}" is not key=value`);
    const key = field.slice(0, eq).toLowerCase();
    const value = field.slice(eq + 1);
    switch (key) {
      case 'type':
        if (value !== 'file' && value !== 'env') throw new BuildError('invalid-argument', `Cannot parse --secret ${text}: unsupported secret type "${value}" (file or env)`);
        type = value;
        break;
      case 'id':
        id = value;
        break;
      case 'src':
      case 'source':
        src = value;
        break;
      case 'env':
        envName = value;
        break;
      default:
        throw new BuildError('invalid-argument', `Cannot parse --secret ${text}: unexpected key "${key}" (id, type, src, env)`);
    }
  }
  if (!id) throw new BuildError('invalid-argument', `Cannot parse --secret ${text}: id is missing`);
  if (type === 'env' && envName === undefined) {
    envName = src;
    src = undefined;
  }
  if (envName !== undefined && envName !== '') return { id, env: envName };
  if (src !== undefined && src !== '') return { id, file: src };
  return env[id] !== undefined ? { id, env: id } : { id, file: id };
}

/** Every `--secret`; an id given twice is refused. */
export function parseSecrets(values: readonly string[], env: NodeJS.ProcessEnv): SecretSpec[] {
  const specs = values.map((v) => parseSecret(v, env));
  const ids = new Set<string>();
  for (const s of specs) {
    if (ids.has(s.id)) throw new BuildError('invalid-argument', `Cannot use --secret id=${s.id}: given twice`);
    ids.add(s.id);
  }
  return specs;
}

/**
 * `--ssh default|ID[=SOCKET|KEY[,KEY]]`, as BuildKit's buildctl: without paths, the agent at
 * $SSH_AUTH_SOCK.
 */
export function parseSsh(text: string, env: NodeJS.ProcessEnv): SshSpec {
  const eq = text.indexOf('=');
  const id = eq < 0 ? text : text.slice(0, eq);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) throw new BuildError('invalid-argument', `Cannot parse --ssh ${text}: bad id "${id}" (letters, digits, ".", "_", "-")`);
  let paths = eq < 0 ? [] : text.slice(eq + 1).split(',').filter((p) => p !== '');
  if (paths.length === 0) {
    const sock = env['SSH_AUTH_SOCK'];
    if (!sock) throw new BuildError('invalid-argument', `Cannot use --ssh ${text}: SSH_AUTH_SOCK is not set (start an ssh-agent, or give ${id}=SOCKET)`);
    paths = [sock];
  }
  return { id, paths };
}

export function parseSshs(values: readonly string[], env: NodeJS.ProcessEnv): SshSpec[] {
  const specs = values.map((v) => parseSsh(v, env));
  const ids = new Set<string>();
  for (const s of specs) {
    if (ids.has(s.id)) throw new BuildError('invalid-argument', `Cannot use --ssh ${s.id}: given twice`);
    ids.add(s.id);
  }
  return specs;
}
