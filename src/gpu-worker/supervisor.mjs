// Runs one training command inside the run's containment, copying its output to the log file
// under a size cap. Spawned by the worker (detached, with an IPC channel):
//   node supervisor.mjs CONFIG_JSON -- PROGRAM ARGS...
// CONFIG_JSON: { log, cwd, cgroup: RunCgroup | null, pidNamespace: boolean, logCapBytes, tailBytes,
//   exitFile?, startedFile?, attachedFile?, orphanGraceMs?, fencingMs?, deadlineMs?, killAfterMs?,
//   childEnvOnStdin? }.
// The supervisor enters the run's cgroup first, so the training process and every descendant
// (setsid'd or double-forked) is born inside it. How the child ended is written to `exitFile`
// before it is reported, so a worker that missed the report (or a restarted one) still knows.
// If the worker goes away (the IPC channel closes), the run goes on while some worker keeps
// `attachedFile` fresh; after `orphanGraceMs` without one, every process of the run is killed.
// Fencing (`fencingMs`): the worker sets the attached file's time to the moment it last confirmed
// the run's lease with the pool. Once that is older than the fencing time, whether or not the
// worker is still connected (frozen, cut off from the server, its lease revoked), the supervisor
// stops the run by itself: the pool re-places it only after that time.
// The kill limit (`deadlineMs`, epoch ms) is enforced here too, so no run outlives it unwatched.
// The training process's own variables (the request's --env and secrets, CUDA_VISIBLE_DEVICES,
// EXPCTL_*) arrive on stdin (with `childEnvOnStdin`) as `{ env, scrub }`, read to its end before
// anything is spawned: they are the child's only, never in this process's environment, argv or a
// file. `scrub` lists the run's secret values in every form they take in text: they are replaced
// in the output before it is written, so the raw log never holds them, and they stay in memory
// only. This process keeps the worker's environment, and finds its own tool (unshare) on the
// worker's PATH.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { killCgroup } from './run-cgroup.mjs';
import { createStreamScrubber } from './stream-scrub.mjs';

const [configJson, separator, program, ...args] = process.argv.slice(2);
if (separator !== '--' || !program || !configJson) {
  console.error('usage: supervisor.mjs CONFIG_JSON -- PROGRAM [ARGS...]');
  process.exit(64);
}
const config = JSON.parse(configJson);
// Null when the worker closed stdin without handing the variables over (it went away first).
const fromWorker = await (async () => {
  if (!config.childEnvOnStdin) return {};
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return null;
  }
})();
const childEnv = fromWorker?.env ?? {};
const scrubber = createStreamScrubber(fromWorker?.scrub ?? []);

/** `name` on this process's PATH (the worker's), or `name` itself when it is not found there. */
function onOwnPath(name) {
  if (name.includes('/')) return name;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return name;
}
// State files are private to the worker's user (src/security/files.ts).
const log = fs.openSync(config.log, 'a', 0o600);
let finished = false;
const orphanGraceMs = config.orphanGraceMs ?? 60_000;
const killAfterMs = config.killAfterMs ?? 10_000;

/** Sends `message` to the worker; resolves once it is flushed (or at once without a worker). */
function report(message) {
  if (!process.connected) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      process.send(message, undefined, {}, (error) => resolve(!error));
    } catch {
      resolve(false);
    }
  });
}

/** Write and rename: a reader sees the whole file or none. */
function writeDurably(file, value) {
  if (!file) return;
  try {
    fs.writeFileSync(`${file}.partial`, JSON.stringify(value), { mode: 0o600 });
    fs.renameSync(`${file}.partial`, file);
  } catch (error) {
    note(`could not write ${file}: ${error.message}`);
  }
}

function note(text) {
  fs.writeSync(log, `\nexpctl: ${text}\n`);
}

function killGroup(signal) {
  try {
    process.kill(-process.pid, signal);
  } catch {
    // group already gone
  }
}

/**
 * The raw log keeps its first `logCapBytes`; beyond that output goes to two alternating tail files
 * of `tailBytes` each, and at the end the last `tailBytes` are appended to the log after a marker,
 * so the `---` block is always there. Disk use stays below logCapBytes + 3 x tailBytes.
 */
class CappedLog {
  constructor(fd, file, capBytes, tailBytes) {
    this.fd = fd;
    this.capBytes = capBytes;
    this.tailBytes = tailBytes;
    this.written = fs.fstatSync(fd).size;
    this.tailFiles = [`${file}.tail.0`, `${file}.tail.1`];
    this.current = -1;
    this.currentSize = 0;
    this.currentFd = null;
    this.omitted = 0;
  }

  write(chunk) {
    if (this.written < this.capBytes) {
      const take = Math.min(chunk.length, this.capBytes - this.written);
      fs.writeSync(this.fd, chunk, 0, take);
      this.written += take;
      chunk = chunk.subarray(take);
      if (chunk.length === 0) return;
      fs.writeSync(
        this.fd,
        `\nexpctl: the log reached its cap of ${this.capBytes} bytes; later output is dropped except its last ${this.tailBytes} bytes, appended at the end\n`,
      );
    }
    this.omitted += chunk.length;
    while (chunk.length > 0) {
      if (this.currentFd === null || this.currentSize >= this.tailBytes) this.rotate();
      const take = Math.min(chunk.length, this.tailBytes - this.currentSize);
      fs.writeSync(this.currentFd, chunk, 0, take);
      this.currentSize += take;
      chunk = chunk.subarray(take);
    }
  }

  rotate() {
    if (this.currentFd !== null) fs.closeSync(this.currentFd);
    this.current = (this.current + 1) % 2;
    this.currentFd = fs.openSync(this.tailFiles[this.current], 'w', 0o600);
    this.currentSize = 0;
  }

  /** Appends the kept tail to the log and removes the tail files. */
  finish() {
    if (this.currentFd === null) return;
    fs.closeSync(this.currentFd);
    this.currentFd = null;
    const previous = this.tailFiles[(this.current + 1) % 2];
    const parts = [
      fs.existsSync(previous) ? fs.readFileSync(previous) : Buffer.alloc(0),
      fs.readFileSync(this.tailFiles[this.current]),
    ];
    const tail = Buffer.concat(parts).subarray(-this.tailBytes);
    fs.writeSync(
      this.fd,
      `\nexpctl: ${this.omitted - tail.length} bytes of output omitted; the last ${tail.length} bytes follow\n`,
    );
    fs.writeSync(this.fd, tail);
    for (const file of this.tailFiles) fs.rmSync(file, { force: true });
  }
}

async function killRun() {
  if (config.cgroup) await killCgroup(config.cgroup, { except: process.pid, timeoutMs: 30_000 });
  killGroup('SIGKILL');
}

/** Every process of the run but the supervisor, which must still record how the run ended. */
async function killChildren() {
  if (config.cgroup) await killCgroup(config.cgroup, { except: process.pid, timeoutMs: 30_000 });
  try {
    child.kill('SIGKILL');
  } catch {
    // gone already
  }
}

// Signals sent to the run reach the child; the supervisor stays to report how it ended.
process.on('SIGTERM', () => {});
process.on('SIGINT', () => {});
// The worker is gone: the run goes on while a worker (a restarted one adopting it) keeps the
// attached file fresh; without one for the orphan grace, every process of the run is killed.
let abandoned = null;
let disconnectedAt = null;
const supervisorStartedAt = Date.now();
const fencingMs = typeof config.fencingMs === 'number' ? config.fencingMs : null;
process.on('disconnect', () => {
  disconnectedAt = Date.now();
  if (finished) return;
  note('the worker supervising this run is gone; the run goes on while a worker attaches to it');
});

/** When a worker last attached to (or confirmed the lease of) this run, by the attached file. */
function attachedAt() {
  if (!config.attachedFile) return supervisorStartedAt;
  return fs.statSync(config.attachedFile, { throwIfNoEntry: false })?.mtimeMs ?? supervisorStartedAt;
}

/** Why the run must stop now for want of a worker or a lease confirmation, or null. */
function abandonReason(now) {
  const touched = attachedAt();
  if (fencingMs !== null && now - touched >= fencingMs)
    return `fenced: no lease confirmation for ${Math.round((now - touched) / 1000)}s`;
  if (disconnectedAt === null) return null;
  const silentMs = now - Math.max(touched, disconnectedAt);
  return silentMs >= orphanGraceMs ? `orphaned: no worker for ${Math.round(silentMs / 1000)}s` : null;
}

const attachmentWatch = setInterval(() => {
  if (finished || abandoned) return clearInterval(attachmentWatch);
  const reason = abandonReason(Date.now());
  if (reason === null) return;
  clearInterval(attachmentWatch);
  note(`${reason}; killing every process of the run`);
  abandoned = reason;
  // Recorded first: whoever reads the run's files later learns why it ended, whatever happens next.
  writeDurably(config.exitFile, { exitCode: null, signal: 'SIGKILL', orphaned: reason, timedOut: false });
  killGroup('SIGTERM');
  setTimeout(
    () => {
      finished = true;
      void killRun().finally(() => process.exit(0));
    },
    Math.min(killAfterMs, 5000),
  );
}, 500);

// The kill limit: SIGTERM to the run, SIGKILL after the grace (the worker does the same when it watches).
let timedOut = false;
if (typeof config.deadlineMs === 'number') {
  setTimeout(
    () => {
      if (finished) return;
      timedOut = true;
      note('the kill limit was reached; stopping the run');
      killGroup('SIGTERM');
      setTimeout(() => void killChildren(), killAfterMs).unref();
    },
    Math.max(0, config.deadlineMs - Date.now()),
  ).unref();
}

// Enter the run's cgroup before anything is spawned: children are born into their parent's cgroup.
let containment = config.cgroup ? (config.cgroup.version === 2 ? 'cgroup-v2' : 'cgroup-v1') : 'process-group';
if (config.cgroup) {
  try {
    for (const dir of config.cgroup.dirs) fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(process.pid));
  } catch (error) {
    note(`could not enter the run's cgroup (${error.message}); the run is contained by its process group only`);
    containment = 'process-group';
  }
}
const pidNamespace = config.pidNamespace && containment === 'process-group';
// expctl's own tool is found on the worker's PATH; the training program on the training process's.
const argv = pidNamespace
  ? [onOwnPath('unshare'), ['--pid', '--fork', '--kill-child', '--', program, ...args]]
  : [program, args];
// A worker that died while this process started (even before its first line ran: the channel can
// close while the modules load) left nobody to watch the run; nor did one that closed stdin
// without the variables (it died while it still asked the pool about the lease, say).
if (process.connected === false || fromWorker === null) {
  // Nobody would watch the run (nor hand it its whole environment: stdin may have been cut short).
  note('the worker went away before the training started; it was not started');
  writeDurably(config.exitFile, {
    exitCode: null,
    signal: null,
    orphaned: 'orphaned: the worker went away before the training started',
    timedOut: false,
  });
  process.exit(0);
}
const output = new CappedLog(log, config.log, config.logCapBytes, config.tailBytes);
/**
 * The worker's own keys stay with the worker: training code never learns where the payload key,
 * the worker's credential or the cluster's API key and client certificate are.
 */
function withoutFleetCredentials(env) {
  const hidden =
    /^(EXPCTL_(KEY_FILE|KEY_COMMAND|CREDENTIAL_FILE|ISSUER_KEY_FILE|ISSUER_PUBLIC_KEY_FILE)|TEMPORAL_(API_KEY|TLS.*|CONFIG_FILE|PROFILE))$/;
  return Object.fromEntries(Object.entries(env).filter(([name]) => !hidden.test(name)));
}
const child = spawn(argv[0], argv[1], {
  cwd: config.cwd,
  stdio: ['ignore', 'pipe', 'pipe'],
  env: { ...withoutFleetCredentials(process.env), ...childEnv },
});
let open = 2;
let exited = null;
/** Bytes read from the child's pipes so far: how the end of its output is told from a pause. */
let received = 0;
const onEnd = () => {
  if (--open === 0 && exited) exited();
};
for (const stream of [child.stdout, child.stderr]) {
  stream.on('data', (chunk) => {
    received += chunk.length;
    output.write(scrubber.push(chunk));
  });
  stream.on('close', onEnd);
}

/**
 * After the child exits, its output still in the pipes is copied until they close. A descendant
 * that keeps them open does not hold the run: they are closed once a second passes with nothing
 * read, or after 30 s. Silence is judged only after the event loop has polled the pipes again
 * (setImmediate runs after the poll phase): a supervisor starved of CPU for longer than a second
 * would otherwise take its own unread output, the metric block, for silence.
 */
function pipesDrained() {
  return new Promise((resolve) => {
    exited = resolve;
    const deadline = Date.now() + 30_000;
    let seen = received;
    const check = () =>
      setImmediate(() => {
        if (open === 0 || received === seen || Date.now() > deadline) return resolve();
        seen = received;
        setTimeout(check, 1000);
      });
    setTimeout(check, 1000);
  });
}

/** The `pid:[inode]` of the namespace unshare creates for the run, once it exists. */
async function namespaceOf(pid) {
  const own = fs.readlinkSync('/proc/self/ns/pid');
  for (let i = 0; i < 100; i++) {
    try {
      const ns = fs.readlinkSync(`/proc/${pid}/ns/pid_for_children`);
      if (ns !== own) return ns;
    } catch {
      return null;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return null;
}

/** Records the exit durably, then reports it, and leaves only once the report is flushed. */
async function ended(exit) {
  finished = true;
  writeDurably(config.exitFile, exit);
  await report({ type: 'exit', exitCode: exit.exitCode, signal: exit.signal });
  // No worker to kill what the child left behind (double-forked descendants): do it here.
  if (!process.connected) await killChildren().catch(() => undefined);
  if (!abandoned) process.exit(0);
}

child.on('error', (error) => {
  note(`could not start ${argv[0]}: ${error.message}`);
  void ended({ exitCode: 127, signal: null, timedOut: false });
});
child.on('spawn', async () => {
  const ns = pidNamespace ? await namespaceOf(child.pid) : null;
  // Without the namespace's id (unshare already gone), the namespace is gone too: its init exited.
  const started = {
    type: 'started',
    pid: child.pid,
    containment: pidNamespace ? 'pid-namespace' : containment,
    pidNamespace: ns,
  };
  writeDurably(config.startedFile, started);
  void report(started);
});
child.on('exit', async (exitCode, signal) => {
  if (open > 0) await pipesDrained();
  child.stdout.destroy();
  child.stderr.destroy();
  output.write(scrubber.end());
  output.finish();
  if (abandoned) return; // the orphan kill records its own exit
  await ended({ exitCode, signal, timedOut });
});
