import { availableParallelism } from 'node:os';

/**
 * libuv's threadpool runs every asynchronous file call of the daemon (context receive, COPY,
 * layer diff, checksums), napi async work (xattrs), async zlib and crypto, and dns.lookup.
 * Its default of 4 threads made the file work that buildd now runs 16 at a time wait in a
 * queue, and a slow getaddrinfo or a disk read that misses the page cache holds a thread
 * without using a CPU. So the pool is sized for calls in flight, not for CPUs: 16 at least
 * (one checksum's or copy's bounded concurrency), 4 per CPU above that, at most 64 (an idle
 * thread costs a stack mapping, hardly any memory).
 */
export function defaultThreadpoolSize(cpus: number): number {
  return Math.min(64, Math.max(16, 4 * cpus));
}

/**
 * Sets UV_THREADPOOL_SIZE in `env` unless the operator set it (theirs wins, also a value libuv
 * itself would clamp). libuv reads it once, when the pool first starts: call this before any
 * asynchronous file, dns, zlib or crypto call of the process. Returns the value in effect.
 */
export function applyThreadpoolSize(env: NodeJS.ProcessEnv = process.env, cpus: number = availableParallelism()): string {
  const own = env['UV_THREADPOOL_SIZE'];
  if (own !== undefined && own.trim() !== '') return own;
  env['UV_THREADPOOL_SIZE'] = String(defaultThreadpoolSize(cpus));
  return env['UV_THREADPOOL_SIZE'];
}
