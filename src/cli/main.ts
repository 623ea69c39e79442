import { readFileSync } from 'node:fs';
import { type Command, CommanderError } from 'commander';
import { EXIT_CODES } from '../domain/exit-codes.js';
import { drained, printJson, safeText, wantsJson } from './output.js';
import { useStack } from '../shared/stack.js';
import { lazy } from './options.js';
import { expctlProgram } from './program.js';

const refuseRun = lazy(() => import('./commands/experiments.js'), 'refuseRun');
const refuseBatch = lazy(() => import('./commands/batch.js'), 'refuseBatch');

/** The version in package.json (the same file from src/cli and from the compiled dist/cli). */
function packageVersion(): string {
  const file = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

// `expctl logs ID | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit();
  throw error;
});
process.stderr.on('error', () => undefined);

const program = expctlProgram(packageVersion());

// Commander reports usage errors through exceptions so `run` can keep its exit-code contract.
const overrideExits = (command: Command): void => {
  command.exitOverride();
  command.commands.forEach(overrideExits);
};
overrideExits(program);

/** The arguments before `--` (after it, everything belongs to the training command). */
const ownArgs = (() => {
  const at = process.argv.indexOf('--');
  return at < 0 ? process.argv : process.argv.slice(0, at);
})();

// Every command finds the user's running stack from any directory (stack.ts); `mcp` does not: each
// of its tool calls is an `expctl` process of its own that looks when it runs.
if (process.argv[2] !== 'mcp') useStack();

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version are not errors; a malformed `run` request is a refusal (exit 2, the usual JSON).
    if (error.exitCode === 0) process.exitCode = EXIT_CODES.decided;
    else if (process.argv[2] === 'run') {
      await refuseRun(`invalid experiment request: ${error.message.replace(/^error: /, '')}`, {
        json: wantsJson({ json: ownArgs.includes('--json') }),
      });
    } else if (process.argv[2] === 'batch') {
      await refuseBatch(`invalid batch request: ${error.message.replace(/^error: /, '')}`, {
        json: wantsJson({ json: ownArgs.includes('--json') }),
      });
    } else {
      // Commander has said what is wrong on stderr; a JSON reader gets it as the usual error object.
      process.exitCode = EXIT_CODES.validation_failed;
      if (wantsJson({ json: ownArgs.includes('--json') }))
        printJson({ error: 'validation_failed', message: error.message.replace(/^error: /, '') });
    }
  } else {
    const { failureOf } = await import('./failure.js');
    const failure = failureOf(error);
    process.exitCode = failure.exitCode;
    console.error(`expctl: ${safeText(failure.message, { multiline: true })}`);
    // An agent reading JSON gets every error as one object too.
    if (wantsJson({ json: ownArgs.includes('--json') })) printJson({ error: failure.code, message: failure.message });
  }
}

// Long-running commands end by themselves. The others may hold gRPC connections that would keep
// the process alive, so they exit explicitly, but only once stdout and stderr are drained: a
// pipe takes 64 KiB at a time, and exiting earlier would cut the output off there.
if (!['dev', 'worker', 'orchestrator', 'codec-server', 'mcp'].includes(process.argv[2] ?? '')) {
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit();
}
