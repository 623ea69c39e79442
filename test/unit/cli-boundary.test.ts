import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../src/cli', import.meta.url));

/** Calls that reach workflows; the CLI leaves them to src/client, which every surface shares. */
const WORKFLOW_CALL =
  /\.workflow\.(getHandle|start|execute|signalWithStart|executeUpdateWithStart|list|count)\b|\.(query|executeUpdate|startUpdate)\(|from '@temporalio\/workflow'|WithStartWorkflowOperation/;

describe('the CLI reaches Temporal only through src/client', () => {
  it('no module of the CLI queries, signals, updates, starts or lists workflows itself', () => {
    const files = fs
      .readdirSync(CLI, { recursive: true, encoding: 'utf8' })
      .filter((name) => name.endsWith('.ts'))
      .map((name) => path.join(CLI, name));
    expect(files.length).toBeGreaterThan(15);
    const offenders = files
      .map((file) => ({ file: path.relative(CLI, file), text: fs.readFileSync(file, 'utf8') }))
      .flatMap(({ file, text }) =>
        text
          .split('\n')
          .map((line, index) => ({ line, where: `${file}:${index + 1}` }))
          .filter(({ line }) => WORKFLOW_CALL.test(line)),
      )
      .map(({ where, line }) => `${where}: ${line.trim()}`);
    expect(offenders).toEqual([]);
  });
});
