// Runs one training command as the leader of its own process group, with output going straight to
// the log file. If the worker that started it dies (its IPC channel closes), it takes the whole
// group down, so no training process outlives the worker that observes it.
// Usage (spawned by the worker with an IPC channel): node supervisor.mjs LOG CWD -- PROGRAM ARGS...
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const [logPath, cwd, separator, program, ...args] = process.argv.slice(2);
if (separator !== '--' || !program) {
  console.error('usage: supervisor.mjs LOG CWD -- PROGRAM [ARGS...]');
  process.exit(64);
}
const log = fs.openSync(logPath, 'a');
let finished = false;

function report(message) {
  if (process.connected) process.send(message);
}

function killGroup(signal) {
  try {
    process.kill(-process.pid, signal);
  } catch {
    // group already gone
  }
}

// Signals sent to the group reach the child too; the supervisor stays to report how it ended.
process.on('SIGTERM', () => {});
process.on('SIGINT', () => {});
process.on('disconnect', () => {
  if (finished) process.exit(0);
  fs.writeSync(log, '\nexpctl: the worker supervising this run is gone; stopping the process group\n');
  killGroup('SIGTERM');
  setTimeout(() => killGroup('SIGKILL'), 5000).unref();
});

const child = spawn(program, args, { cwd, stdio: ['ignore', log, log], env: process.env });
child.on('error', (error) => {
  finished = true;
  fs.writeSync(log, `expctl: could not start ${program}: ${error.message}\n`);
  report({ type: 'exit', exitCode: 127, signal: null });
  setTimeout(() => process.exit(0), 100);
});
child.on('spawn', () => report({ type: 'started', pid: child.pid }));
child.on('exit', (exitCode, signal) => {
  finished = true;
  report({ type: 'exit', exitCode, signal });
  // Leave time for the message to flush, then go; stray grandchildren of the run go with the group.
  setTimeout(() => {
    killGroup('SIGKILL');
  }, 200);
});
