/**
 * `npm run soak [-- --runs 5] [--burners 2] [--log soak.log]`: runs the whole test suite N times
 * in a row while B CPU-bound processes run beside it, and stops at the first red run.
 * This is how the suite's reliability under load is checked; every line of every run goes to the
 * log, followed by one summary line per run and a final verdict.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { stripVTControlCharacters } from 'node:util';
import { execa } from 'execa';

function parseArgs(argv: string[]) {
  const options = { runs: 5, burners: 2, log: 'soak.log' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    const count = (name: string) => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 0) throw new Error(`${name} takes a whole number`);
      return n;
    };
    if (arg === '--runs') options.runs = count('--runs');
    else if (arg === '--burners') options.burners = count('--burners');
    else if (arg === '--log') options.log = value();
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: npm run soak -- [--runs 5] [--burners 2] [--log soak.log]');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (see --help)`);
  }
  if (options.runs < 1) throw new Error('--runs must be at least 1');
  return options;
}

if (process.argv[2] === '--burn') {
  // A CPU-bound process: spin until the parent goes away.
  for (;;) if (process.connected === false) process.exit(0);
}

const options = parseArgs(process.argv.slice(2));
const log = (line: string) => {
  appendFileSync(options.log, line + '\n');
  console.log(line);
};
writeFileSync(options.log, '');
log(`soak: ${options.runs} runs of npm test, ${options.burners} CPU-bound processes beside it, ${cpus().length} cores`);

const burners: ChildProcess[] = [];
for (let i = 0; i < options.burners; i++)
  burners.push(fork(new URL(import.meta.url).pathname, ['--burn'], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] }));
const stopBurners = () => burners.forEach((child) => child.kill('SIGKILL'));
process.on('exit', stopBurners);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

const results: { run: number; passed: boolean; seconds: number; summary: string }[] = [];
for (let run = 1; run <= options.runs; run++) {
  log(`soak: run ${run}/${options.runs} starts at ${new Date().toISOString()}, load ${loadavg()[0]!.toFixed(2)}`);
  const started = Date.now();
  const child = execa('npm', ['test'], { all: true, reject: false, env: { FORCE_COLOR: '0' } });
  let tail = '';
  child.all!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    appendFileSync(options.log, text);
    tail = (tail + text).slice(-4000);
  });
  const result = await child;
  const seconds = (Date.now() - started) / 1000;
  // Vitest colours its summary even with FORCE_COLOR=0: matched without the escape codes.
  const summary = stripVTControlCharacters(tail)
    .split('\n')
    .filter((line) => /^\s*(Test Files|Tests)\s/.test(line))
    .map((line) => line.trim().replace(/\s+/g, ' '))
    .join('; ');
  const passed = result.exitCode === 0;
  results.push({ run, passed, seconds, summary });
  log(`soak: run ${run}/${options.runs} ${passed ? 'PASSED' : 'FAILED'} in ${seconds.toFixed(0)} s: ${summary}`);
  if (!passed) break;
}
stopBurners();
const green = results.filter((r) => r.passed).length;
log(
  `soak: ${green}/${options.runs} runs green in a row${green === options.runs ? '' : ' (stopped at the first red run)'}`,
);
process.exit(green === options.runs ? 0 : 1);
