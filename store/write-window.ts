/**
 * Writes handed to another thread (the file thread) whose results are awaited only when too
 * many are out: a window of at most `maxCount` writes and `maxBytes` bytes, oldest first. A
 * write that fails fails the `add` that waits for it, or the caller's wait on `takeAll`'s
 * promises. Lifecycle: one per batch of writes (a sync, a copy); `add` as writes go out, then
 * wait on `takeAll()` before anything reads what they wrote (or removes their directory).
 */
export class WriteWindow {
  private readonly out: Array<{ done: Promise<void>; bytes: number }> = [];
  private bytes = 0;

  constructor(
    private readonly maxCount: number,
    private readonly maxBytes: number,
  ) {}

  /** Records a write of `bytes`; waits for the oldest ones while the window is over its bounds. */
  async add(done: Promise<void>, bytes: number): Promise<void> {
    this.out.push({ done, bytes });
    this.bytes += bytes;
    while (this.out.length > this.maxCount || this.bytes > this.maxBytes) {
      const oldest = this.out.shift() as { done: Promise<void>; bytes: number };
      await oldest.done;
      this.bytes -= oldest.bytes;
    }
  }

  /** The promises of every write still out, and none left in the window. */
  takeAll(): Array<Promise<void>> {
    this.bytes = 0;
    return this.out.splice(0).map((w) => w.done);
  }
}
