/** Polls until `probe` returns something other than undefined (errors count as not yet). */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls until `predicate` holds. */
export async function waitFor(predicate: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  await eventually(async () => ((await predicate()) ? true : undefined), timeoutMs);
}
