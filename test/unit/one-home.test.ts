import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TAG_POLICY } from '../../src/domain/decision.js';
import { EXIT_CODES } from '../../src/domain/exit-codes.js';
import { promotionExitCode } from '../../src/domain/promotion.js';
import { parsePriority, PRIORITY_RANGE, RequestValidationError, tagProblem } from '../../src/domain/request.js';
import { tagPolicyProblem } from '../../src/domain/tag-policy.js';
import { batchExitCode } from '../../src/domain/tournament.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sourceFiles(): { file: string; text: string }[] {
  return fs
    .readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((name) => /\.(ts|mjs)$/.test(name))
    .map((name) => ({ file: name, text: fs.readFileSync(path.join(SRC, name), 'utf8') }));
}

/** The files of src that contain `pattern`. */
function homesOf(pattern: RegExp): string[] {
  return sourceFiles()
    .filter(({ text }) => pattern.test(text))
    .map(({ file }) => file)
    .sort();
}

describe('each rule is written in one file of src', () => {
  it('the tag pattern, the default metric, the history limit and RunNotOnHost', () => {
    expect(sourceFiles().length).toBeGreaterThan(100);
    expect(homesOf(/\[A-Za-z0-9\]\[A-Za-z0-9_\.-\]\{0,63\}/)).toEqual(['domain/bounds.ts']);
    expect(homesOf(/'val_bpb'/)).toEqual(['domain/decision.ts']);
    expect(homesOf(/HISTORY_EVENTS_LIMIT = /)).toEqual(['domain/limits.ts']);
    expect(homesOf(/'RunNotOnHost'/)).toEqual(['shared/constants.ts']);
    expect(homesOf(/PRIORITY_RANGE = /)).toEqual(['domain/request.ts']);
  });

  it('the control-step activity options', () => {
    expect(homesOf(/CONTROL_STEP_TIMEOUT = /)).toEqual(['workflows/control-retry.ts']);
    expect(homesOf(/retry: CONTROL_RETRY/)).toEqual(['workflows/control-retry.ts']);
    // Host-queue reads keep their own timeouts and retries: a host is not the control worker.
    expect(homesOf(/startToCloseTimeout: '30s'/)).toEqual([
      'workflows/health.ts',
      'workflows/read-patch.ts',
      'workflows/smoke.ts',
    ]);
  });

  it('exit codes: no CliError or process exit names a number', () => {
    const numeric = /CliError\([^)]*,\s*\d+\s*\)|process\.exit(Code)?\s*(=|\()\s*\d|exitCode\s*===?\s*[1-9]/;
    const offenders = sourceFiles()
      .filter(({ file }) => file.endsWith('.ts'))
      .flatMap(({ file, text }) =>
        text
          .split('\n')
          .map((line, i) => ({ line, where: `${file}:${i + 1}` }))
          .filter(({ line }) => numeric.test(line)),
      )
      .map(({ where, line }) => `${where}: ${line.trim()}`);
    expect(offenders).toEqual([]);
  });
});

describe('the shared rules', () => {
  it('a malformed tag gets the one message, naming where it came from', () => {
    expect(tagProblem('ok-tag.1')).toBeUndefined();
    expect(tagProblem('bad tag!')).toMatch(/^tag "bad tag!": a tag is letters, digits/);
    expect(tagProblem('x'.repeat(65), 'tag prefix')).toMatch(/^tag prefix "x{65}": a tag is /);
  });

  it('a priority outside the range is refused by the client as by the CLI', () => {
    expect(parsePriority(undefined)).toBe(0);
    expect(parsePriority(PRIORITY_RANGE.max)).toBe(PRIORITY_RANGE.max);
    expect(() => parsePriority(PRIORITY_RANGE.max + 1)).toThrow(RequestValidationError);
    expect(() => parsePriority(1.5)).toThrow(/^invalid experiment request: priority: /);
  });

  it('tag policy limits: the checks the workflow applies to every caller', () => {
    expect(tagPolicyProblem({})).toBeNull();
    expect(tagPolicyProblem(DEFAULT_TAG_POLICY)).toBeNull();
    expect(tagPolicyProblem({ nearMissThreshold: -1 })).toBe('nearMissThreshold must be >= 0');
    expect(tagPolicyProblem({ nearMissThreshold: Infinity })).toBe('nearMissThreshold must be finite');
    expect(tagPolicyProblem({ maxConsecutiveCrashes: 0 })).toMatch(/^maxConsecutiveCrashes must be a whole number/);
    expect(tagPolicyProblem({ minImprovement: NaN })).toBe('minImprovement must be a finite number >= 0');
    expect(tagPolicyProblem({ guards: Array(33).fill({ metric: 'a', op: '==', value: '1' }) })).toMatch(/at most 32/);
    expect(tagPolicyProblem({ allowEnv: ['BAD NAME'] })).toMatch(/^allowEnv must be a list/);
  });

  it('exit codes read from the table keep their values', () => {
    expect(promotionExitCode('promoted')).toBe(0);
    expect(promotionExitCode('rejected')).toBe(EXIT_CODES.run_failed);
    expect(promotionExitCode('failed')).toBe(4);
    expect(batchExitCode([2, 4, 3])).toBe(3);
    expect(batchExitCode([2, 2])).toBe(2);
    expect(batchExitCode([])).toBe(2);
  });
});
