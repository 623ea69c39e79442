/**
 * Work serialized per key: a task runs after every earlier task of its key has settled, whether
 * it succeeded or not. Keys with nothing pending are forgotten.
 */
export class KeyedQueue {
  /** Per key, the last task's settling (never rejects). */
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const turn = (this.tails.get(key) ?? Promise.resolve()).then(work);
    const tail = turn.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return turn;
  }

  /** Resolves once nothing is pending for `key`. */
  async settled(key: string): Promise<void> {
    await this.tails.get(key);
  }

  /** Resolves once nothing is pending at all. */
  async drain(): Promise<void> {
    await Promise.all(this.tails.values());
  }

  /** How many keys have work pending. */
  get size(): number {
    return this.tails.size;
  }
}
