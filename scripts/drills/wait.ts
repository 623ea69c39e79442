/** Polls `check` until it holds; an error thrown by `check` ends the wait with that error. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Like waitUntil, but says whether the condition held instead of throwing. */
export async function holdsWithin(
  check: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 250,
): Promise<boolean> {
  return waitUntil(check, timeoutMs, intervalMs).then(
    () => true,
    () => false,
  );
}
