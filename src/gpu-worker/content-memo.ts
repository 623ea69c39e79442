/**
 * Answers about git objects, remembered per worker process. A commit's tree, files and patch are
 * content-addressed, so an answer never goes stale; a failure is not remembered (the next caller
 * asks git again), and the oldest answers go first once `limit` are held.
 */
export class ContentMemo<T> {
  private readonly answers = new Map<string, Promise<T>>();

  constructor(private readonly limit: number) {}

  get(key: string, make: () => Promise<T>): Promise<T> {
    const known = this.answers.get(key);
    if (known) return known;
    const made = make();
    this.answers.set(key, made);
    made.catch(() => {
      if (this.answers.get(key) === made) this.answers.delete(key);
    });
    if (this.answers.size > this.limit) this.answers.delete(this.answers.keys().next().value!);
    return made;
  }
}
