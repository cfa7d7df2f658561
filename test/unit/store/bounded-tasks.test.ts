import { BoundedTasks } from '../../../store/bounded-tasks';

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('BoundedTasks', () => {
  it('never runs more than its limit at once, and drain waits for every job', async () => {
    const tasks = new BoundedTasks(3);
    let running = 0;
    let peak = 0;
    let finished = 0;
    const gates = Array.from({ length: 10 }, () => deferred());
    const started = (async () => {
      for (const gate of gates) {
        await tasks.run(async () => {
          running++;
          peak = Math.max(peak, running);
          await gate.promise;
          running--;
          finished++;
        });
      }
    })();
    // release the gates one by one, in order; run() only returns when a slot is free
    for (const gate of gates) {
      await new Promise((r) => setImmediate(r));
      gate.resolve();
    }
    await started;
    await tasks.drain();
    expect(finished).toBe(10);
    expect(peak).toBe(3);
  });

  it('keeps the first failure: later runs throw it, drain throws it after the rest settle', async () => {
    const tasks = new BoundedTasks(2);
    const slow = deferred();
    let slowDone = false;
    await tasks.run(async () => {
      await slow.promise;
      slowDone = true;
    });
    await tasks.run(async () => {
      throw new Error('first');
    });
    await new Promise((r) => setImmediate(r));
    await expect(tasks.run(async () => undefined)).rejects.toThrow('first');
    const drained = tasks.drain();
    slow.resolve();
    await expect(drained).rejects.toThrow('first');
    expect(slowDone).toBe(true);
  });

  it('settle waits for jobs in flight and never throws', async () => {
    const tasks = new BoundedTasks(1);
    const gate = deferred();
    let done = false;
    await tasks.run(async () => {
      await gate.promise;
      done = true;
      throw new Error('late');
    });
    const settled = tasks.settle();
    gate.resolve();
    await expect(settled).resolves.toBeUndefined();
    expect(done).toBe(true);
  });

  it('gives the slot back when a job throws before returning its promise', async () => {
    const tasks = new BoundedTasks(1);
    const boom = new Error('thrown synchronously');
    await tasks.run(() => {
      throw boom;
    });
    await expect(tasks.drain()).rejects.toBe(boom);
    await tasks.settle();
  });

  it('refuses a limit that is not a positive integer', () => {
    expect(() => new BoundedTasks(0)).toThrow(RangeError);
    expect(() => new BoundedTasks(1.5)).toThrow(RangeError);
  });
});
