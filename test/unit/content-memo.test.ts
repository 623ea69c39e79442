import { describe, expect, it } from 'vitest';
import { ContentMemo } from '../../src/gpu-worker/content-memo.js';

describe('ContentMemo', () => {
  it('asks once per key, sharing an answer still in flight', async () => {
    const memo = new ContentMemo<string>(8);
    let asked = 0;
    const ask = async () => `answer ${++asked}`;
    const [a, b] = await Promise.all([memo.get('k', ask), memo.get('k', ask)]);
    expect([a, b, await memo.get('k', ask)]).toEqual(['answer 1', 'answer 1', 'answer 1']);
    expect(asked).toBe(1);
  });

  it('does not remember a failure: the next caller asks again', async () => {
    const memo = new ContentMemo<string>(8);
    await expect(memo.get('k', () => Promise.reject(new Error('not fetched yet')))).rejects.toThrow('not fetched');
    expect(await memo.get('k', async () => 'fetched')).toBe('fetched');
  });

  it('lets the oldest answer go once more than its limit are held', async () => {
    const memo = new ContentMemo<string>(2);
    for (const key of ['a', 'b', 'c']) await memo.get(key, async () => `${key} first`);
    expect(await memo.get('a', async () => 'a again')).toBe('a again');
    expect(await memo.get('c', async () => 'c again')).toBe('c first');
  });
});
