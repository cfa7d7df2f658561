import { Semaphore } from '../../../solver/semaphore';

/** Starts `n` acquisitions for `group`, recording the order they are granted in `order`. */
function queue(sem: Semaphore, group: object, name: string, n: number, order: string[]): Array<Promise<() => void>> {
  return Array.from({ length: n }, (_, i) =>
    sem.acquire(undefined, group).then((release) => {
      order.push(`${name}${i}`);
      return release;
    }),
  );
}

describe('Semaphore', () => {
  it('gives freed slots to the waiting builds in turn, first come first served within one', async () => {
    const sem = new Semaphore(1);
    const first = await sem.acquire();
    const order: string[] = [];
    const releases = new Map<string, () => void>();
    const track = (name: string, p: Promise<() => void>): void => void p.then((r) => releases.set(name, r));
    const long = {};
    const short = {};
    queue(sem, long, 'long', 5, order).forEach((p, i) => track(`long${i}`, p));
    queue(sem, short, 'short', 2, order).forEach((p, i) => track(`short${i}`, p));
    let release = first;
    for (let i = 0; i < 7; i++) {
      release();
      // the grant's continuations run before the next slot is given back
      await new Promise((resolve) => setImmediate(resolve));
      release = releases.get(order[order.length - 1] as string) as () => void;
    }
    release();
    expect(order).toEqual(['long0', 'short0', 'long1', 'short1', 'long2', 'long3', 'long4']);
  });

  it('frees the turn of a waiter whose build is cancelled', async () => {
    const sem = new Semaphore(1);
    const held = await sem.acquire();
    const abort = new AbortController();
    const cancelled = sem.acquire(abort.signal, {});
    const other = sem.acquire(undefined, {});
    abort.abort(new Error('gone'));
    await expect(cancelled).rejects.toThrow('gone');
    held();
    const release = await other;
    release();
    // the slot came back: one more acquire is immediate
    (await sem.acquire())();
  });
});
