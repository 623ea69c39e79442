import { describe, expect, it } from 'vitest';
import { DeferredCleanup } from '../../src/gpu-worker/deferred-cleanup.js';

/** A promise the test resolves when it chooses. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('DeferredCleanup', () => {
  it('runs work on one path in order; a reuse of the path waits for it; others do not', async () => {
    const cleanup = new DeferredCleanup();
    const order: string[] = [];
    const first = gate();
    cleanup.defer('/runs/a/tree', async () => {
      await first.opened;
      order.push('remove a (1)');
    });
    cleanup.defer('/runs/a/tree', async () => order.push('remove a (2)'));
    cleanup.defer('/runs/b/tree', async () => order.push('remove b'));

    await cleanup.settled('/runs/b/tree');
    expect(order).toEqual(['remove b']);
    let reused = false;
    const reuse = cleanup.settled('/runs/a/tree').then(() => (reused = true));
    await Promise.resolve();
    expect(reused).toBe(false);

    first.open();
    await reuse;
    expect(order).toEqual(['remove b', 'remove a (1)', 'remove a (2)']);
    await cleanup.drain();
    expect(cleanup.size).toBe(0);
  });

  it('a failed removal neither blocks the path nor the drain', async () => {
    const cleanup = new DeferredCleanup();
    cleanup.defer('/runs/c/tree', () => Promise.reject(new Error('git failed')));
    let after = false;
    cleanup.defer('/runs/c/tree', async () => (after = true));
    await cleanup.drain();
    expect(after).toBe(true);
  });
});
