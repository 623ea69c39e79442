import fs from 'node:fs/promises';
import { devInfoPath, readDevInfo, type DevStackInfo } from '../temporal/connection.js';
import { createExclusive } from '../security/files.js';
import { isRunning } from '../temporal/pid-file.js';

/**
 * Takes the state directory's lock (dev.json, naming this process by pid and start time).
 * Returns the running stack that holds it, or undefined once this process holds it.
 */
export async function acquireStateLock(info: DevStackInfo): Promise<DevStackInfo | undefined> {
  for (;;) {
    if (await createExclusive(devInfoPath(), JSON.stringify(info, null, 2))) return undefined;
    const holder = readDevInfo();
    if (holder && isRunning({ pid: holder.pid, startTime: holder.startTime ?? null })) return holder;
    // Left by an `expctl dev` that was killed: take it over (rename is atomic, so one taker wins).
    const stale = `${devInfoPath()}.stale-${process.pid}`;
    await fs.rename(devInfoPath(), stale).catch(() => undefined);
    await fs.rm(stale, { force: true });
  }
}
