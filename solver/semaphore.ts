import { BuildError } from './build-error';

/** The group of waiters that name none. */
const NO_GROUP = Symbol('no group');

/** One waiter: its grant, and the group it queues in. */
interface Waiter {
  grant: () => void;
  group: unknown;
}

/**
 * Bounds how many steps run at once, shared fairly between builds. `acquire` resolves when a
 * slot is free (or rejects when the signal aborts first); the returned function gives the slot
 * back exactly once.
 *
 * Waiters queue per group (a build); a freed slot goes to the groups in turn (round robin),
 * first come first served within a group. So a build with a hundred steps waiting does not
 * starve a build that asks for two later: the short one gets every other slot that frees up.
 */
export class Semaphore {
  private available: number;
  /** groups with waiters, in the order they get their next slot */
  private readonly turns: unknown[] = [];
  private readonly queues = new Map<unknown, Waiter[]>();

  constructor(slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`Cannot create semaphore: ${slots} slots`);
    this.available = slots;
  }

  /** `group`: who asks (a build); waiters without one share a single group. */
  async acquire(signal?: AbortSignal, group: unknown = NO_GROUP): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.available > 0) {
      this.available--;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.forget(waiter);
        reject(signal?.reason ?? new BuildError('cancelled', 'Cannot acquire a step slot: the build was cancelled'));
      };
      const waiter: Waiter = {
        group,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.enqueue(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    return this.releaser();
  }

  private enqueue(w: Waiter): void {
    const q = this.queues.get(w.group);
    if (q) {
      q.push(w);
      return;
    }
    this.queues.set(w.group, [w]);
    this.turns.push(w.group);
  }

  private forget(w: Waiter): void {
    const q = this.queues.get(w.group);
    const i = q?.indexOf(w) ?? -1;
    if (!q || i < 0) return;
    q.splice(i, 1);
    if (q.length === 0) this.dropGroup(w.group);
  }

  private dropGroup(group: unknown): void {
    this.queues.delete(group);
    const t = this.turns.indexOf(group);
    if (t >= 0) this.turns.splice(t, 1);
  }

  /** The next waiter in turn: the first of the group whose turn it is; that group goes last. */
  private next(): Waiter | undefined {
    if (this.turns.length === 0) return undefined;
    const group = this.turns.shift();
    const q = this.queues.get(group) as Waiter[];
    const w = q.shift() as Waiter;
    if (q.length === 0) this.queues.delete(group);
    else this.turns.push(group);
    return w;
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.next();
      if (next) next.grant();
      else this.available++;
    };
  }
}
