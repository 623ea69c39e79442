import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHostActivities } from '../../src/activities/host.js';
import { READ_LOG_PAGE_BYTES } from '../../src/domain/limits.js';
import { REDACTED } from '../../src/domain/redact.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { holdRunSecrets } from '../../src/gpu-worker/run-secrets.js';

let workDir: string;
let host: ReturnType<typeof createHostActivities>;

beforeAll(async () => {
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-readlog-'));
  host = createHostActivities({ host: 'h', workDir, slots: [], datasetsDir: workDir });
});
afterAll(async () => fs.rm(workDir, { recursive: true, force: true }));

async function writeLog(experimentId: string, content: string | Buffer): Promise<void> {
  const files = runFiles(workDir, experimentId);
  await fs.mkdir(files.dir, { recursive: true });
  await fs.writeFile(files.log, content);
}

describe('readLog pages', () => {
  it('reads a log in small pages that never split a character, and reassembles it exactly', async () => {
    const text = 'step 1 | loss 2.0 ✓ énergie 🚀\n'.repeat(50);
    await writeLog('utf8', text);
    let offset = 0;
    let joined = '';
    for (let pages = 0; pages < 10_000; pages++) {
      const page = await host.readLog('utf8', offset, 7);
      expect(Buffer.byteLength(page.text)).toBeLessThanOrEqual(7);
      expect(page.text).not.toContain('\uFFFD');
      joined += page.text;
      if (page.nextOffset === page.size) break;
      expect(page.nextOffset).toBeGreaterThan(offset);
      offset = page.nextOffset;
    }
    expect(joined).toBe(text);
  });

  it('caps a page whatever the caller asks for, and clamps odd offsets', async () => {
    await writeLog('big', Buffer.alloc(READ_LOG_PAGE_BYTES * 3, 'a'));
    const page = await host.readLog('big', 0, 1e12);
    expect(page.text.length).toBe(READ_LOG_PAGE_BYTES);
    expect(page).toMatchObject({ nextOffset: READ_LOG_PAGE_BYTES, size: READ_LOG_PAGE_BYTES * 3 });
    expect(await host.readLog('big', -5, 3)).toMatchObject({ text: 'aaa', nextOffset: 3 });
    expect(await host.readLog('big', 1e15, 10)).toMatchObject({ text: '', nextOffset: READ_LOG_PAGE_BYTES * 3 });
    expect(await host.readLog('absent', 0, 10)).toEqual({ text: '', nextOffset: 0, size: 0 });
  });
});

describe('readLog pages are scrubbed', () => {
  const secret = 'tok-Zq81-secret-value';
  const log = `start\nAPI_TOKEN=${secret}\nstep 1 ${secret}${secret} end\n${secret}`;

  beforeAll(async () => {
    await writeLog('secret', log);
    holdRunSecrets('secret', [secret]);
  });

  it('whatever the page size, no page holds a secret or part of one, and the pages join to the scrubbed log', async () => {
    for (const size of [1, 3, 7, 10, 21, 64, 4096]) {
      let offset = 0;
      let joined = '';
      for (let pages = 0; pages < 10_000; pages++) {
        const page = await host.readLog('secret', offset, size);
        for (let cut = 6; cut <= secret.length; cut++)
          for (let at = 0; at + cut <= secret.length; at++) expect(page.text).not.toContain(secret.slice(at, at + cut));
        joined += page.text;
        if (page.nextOffset === page.size) break;
        expect(page.nextOffset).toBeGreaterThan(offset);
        offset = page.nextOffset;
      }
      expect(joined).toBe(log.split(secret).join(REDACTED));
    }
  });

  it('an offset inside a secret reads the rest of it as [redacted]', async () => {
    const inside = log.indexOf(secret) + 5;
    const page = await host.readLog('secret', inside, 64);
    expect(page).toMatchObject({ text: `${REDACTED}\n`, nextOffset: log.indexOf('step') });
  });
});
