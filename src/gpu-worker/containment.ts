import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { ContainmentKind } from '../domain/experiment.js';
import { processAlive } from '../shared/processes.js';
import { cgroupMembers, killCgroup, removeCgroup, type RunCgroup } from './run-cgroup.mjs';

/**
 * Every training run is contained so that all of its processes (setsid'd and double-forked ones
 * included) can be found and killed: in its own cgroup where the host allows one, else in a PID
 * namespace, else in the supervisor's process group. See README "Containment".
 */

/** Where this worker creates run cgroups: one parent directory per hierarchy. */
export interface CgroupLayout {
  version: 1 | 2;
  /** v2: [parent]; v1: the memory, pids and freezer parents (pids only when mounted). */
  parents: { memory: string | null; pids: string | null; freezer: string | null; unified: string | null };
}

/** What a host offers a run, detected once per worker. */
export interface ContainmentSupport {
  cgroups: CgroupLayout | null;
  /** `unshare --pid --fork --kill-child` works (the fallback without cgroups). */
  pidNamespace: boolean;
}

/** How one run is contained; serializable (the supervisor receives it). */
export interface RunContainment {
  kind: ContainmentKind;
  cgroup: RunCgroup | null;
  /** The cgroup directory with memory accounting, when there is one. */
  memoryDir: string | null;
}

/** A delegated cgroup v2 directory to create run cgroups under (instead of the worker's own cgroup). */
export const CGROUP_ROOT_ENV = 'EXPCTL_CGROUP_ROOT';

interface Mount {
  point: string;
  type: string;
  options: string[];
}

async function readMounts(): Promise<Mount[]> {
  const text = await fs.readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return text.split('\n').flatMap((line) => {
    const [, point, type, options] = line.split(' ');
    if (!point || !type || !options) return [];
    return [{ point: point.replace(/\\040/g, ' '), type, options: options.split(',') }];
  });
}

/** The worker's own cgroup path per v1 controller ('' is the v2 tree). */
async function ownCgroups(): Promise<Map<string, string>> {
  const text = await fs.readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const own = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    for (const controller of match[1]!.split(',')) own.set(controller, match[2]!);
  }
  return own;
}

async function tryMkdir(dir: string): Promise<boolean> {
  return fs.mkdir(dir, { recursive: true }).then(
    () => true,
    () => false,
  );
}

/** Enables what it can of `controllers` for the children of `dir` (best effort: EBUSY where `dir` holds processes). */
/** The leaf (under `expctl/`) a worker moves itself into, so its own cgroup can hand controllers down. */
const WORKER_LEAF = 'workers';

/** The worker's cgroup before it moved into its leaf (a worker detects again after moving). */
function outsideWorkerLeaf(own: string): string {
  const suffix = `/expctl/${WORKER_LEAF}`;
  return own.endsWith(suffix) ? own.slice(0, -suffix.length) || '/' : own;
}

/** The controllers a cgroup's children may use (what its subtree_control enables). */
async function controllersOf(dir: string): Promise<string[]> {
  const text = await fs.readFile(path.join(dir, 'cgroup.subtree_control'), 'utf8').catch(() => '');
  return text.split(/\s+/).filter(Boolean);
}

async function enableControllers(dir: string, controllers: string[]): Promise<void> {
  const available = (await fs.readFile(path.join(dir, 'cgroup.controllers'), 'utf8').catch(() => '')).split(/\s+/);
  for (const controller of controllers.filter((c) => available.includes(c))) {
    await fs.writeFile(path.join(dir, 'cgroup.subtree_control'), `+${controller}`).catch(() => undefined);
  }
}

/** The part of the cgroup tree that belongs to one worker (its work directory), so workers on one host never touch each other's runs. */
export function workerScope(workDir: string): string {
  return `w-${crypto.createHash('sha256').update(path.resolve(workDir)).digest('hex').slice(0, 12)}`;
}

/**
 * Finds how runs can be contained here and prepares this worker's cgroup parents. Pure cgroup v2
 * (memory controller in the v2 tree) is preferred; a hybrid host with v1 memory and freezer
 * hierarchies uses those; a v2 tree without controllers still gives kill-all containment.
 */
export async function detectContainment(
  workDir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ContainmentSupport> {
  const pinned = pinnedContainment(env);
  const cgroups = pinned === 'pid-namespace' || pinned === 'process-group' ? null : await detectCgroups(workDir, env);
  return { cgroups, pidNamespace: pinned === 'process-group' ? false : await pidNamespaceWorks() };
}

/** Pins containment to one kind or weaker (EXPCTL_CONTAINMENT=cgroup-v2|cgroup-v1|pid-namespace|process-group). */
export const CONTAINMENT_ENV = 'EXPCTL_CONTAINMENT';
const KINDS: readonly ContainmentKind[] = ['cgroup-v2', 'cgroup-v1', 'pid-namespace', 'process-group'];

function pinnedContainment(env: NodeJS.ProcessEnv): ContainmentKind | null {
  const value = env[CONTAINMENT_ENV];
  if (!value) return null;
  if (!(KINDS as readonly string[]).includes(value))
    throw new Error(`${CONTAINMENT_ENV}=${value}: expected one of ${KINDS.join(', ')}`);
  return value as ContainmentKind;
}

export async function detectCgroups(
  workDir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CgroupLayout | null> {
  if (process.platform !== 'linux') return null;
  const pinned = pinnedContainment(env);
  const mounts = await readMounts();
  const own = await ownCgroups();
  const scope = path.join('expctl', workerScope(workDir));
  const unified = mounts.find((m) => m.type === 'cgroup2');
  const v1 = (controller: string) => mounts.find((m) => m.type === 'cgroup' && m.options.includes(controller));

  const v2 = async (): Promise<CgroupLayout | null> => {
    if (!unified) return null;
    const delegated = env[CGROUP_ROOT_ENV];
    const base = delegated || path.join(unified.point, outsideWorkerLeaf(own.get('') ?? '/'));
    const expctl = path.join(base, 'expctl');
    const parent = path.join(base, scope);
    if (!(await tryMkdir(parent))) return null;
    const enable = async () => {
      for (const dir of [base, expctl, parent]) await enableControllers(dir, ['memory', 'pids']);
    };
    await enable();
    // cgroup v2 hands no controller down from a cgroup that holds processes (no internal processes):
    // a worker started in its own cgroup (a systemd unit with Delegate=yes, a container) moves into a
    // leaf of it, so run cgroups get memory accounting (peak memory, OOM kills) and not only kill-all.
    const offered = await fs.readFile(path.join(base, 'cgroup.controllers'), 'utf8').catch(() => '');
    if (!delegated && offered.split(/\s+/).includes('memory') && !(await controllersOf(parent)).includes('memory')) {
      const leaf = path.join(expctl, WORKER_LEAF);
      if (await tryMkdir(leaf)) {
        await fs.writeFile(path.join(leaf, 'cgroup.procs'), String(process.pid)).catch(() => undefined);
        await enable();
      }
    }
    return { version: 2, parents: { memory: null, pids: null, freezer: null, unified: parent } };
  };
  if (pinned === 'cgroup-v2') return v2();
  const unifiedControllers = unified
    ? await fs.readFile(path.join(unified.point, 'cgroup.controllers'), 'utf8').catch(() => '')
    : '';
  if (unified && unifiedControllers.split(/\s+/).includes('memory') && pinned !== 'cgroup-v1') return v2();

  const memory = v1('memory');
  const freezer = v1('freezer');
  if (memory && freezer) {
    const pids = v1('pids');
    const parentOf = (mount: Mount, controller: string) => path.join(mount.point, own.get(controller) ?? '/', scope);
    const parents = {
      memory: parentOf(memory, 'memory'),
      pids: pids ? parentOf(pids, 'pids') : null,
      freezer: parentOf(freezer, 'freezer'),
      unified: null,
    };
    let ok = true;
    for (const dir of [parents.memory, parents.pids, parents.freezer]) if (dir && !(await tryMkdir(dir))) ok = false;
    if (ok) return { version: 1, parents };
  }
  return pinned === 'cgroup-v1' ? null : v2();
}

let pidNamespaceProbe: Promise<boolean> | undefined;
/** Whether util-linux `unshare` may create PID namespaces here (checked once per process). */
export function pidNamespaceWorks(): Promise<boolean> {
  pidNamespaceProbe ??= execa('unshare', ['--pid', '--fork', '--kill-child', 'true'], {
    reject: false,
    timeout: 10_000,
  }).then(
    (result) => result.exitCode === 0,
    () => false,
  );
  return pidNamespaceProbe;
}

function runCgroupOf(layout: CgroupLayout, name: string): RunCgroup {
  if (layout.version === 2) {
    const dir = path.join(layout.parents.unified!, name);
    return { version: 2, dirs: [dir], freezer: dir };
  }
  const { memory, pids, freezer } = layout.parents;
  const dirs = [memory, pids, freezer].filter((d): d is string => d !== null).map((d) => path.join(d, name));
  return { version: 1, dirs, freezer: path.join(freezer!, name) };
}

/** The run cgroup name of an experiment (ids are already safe path components; see run-files.ts). */
function runCgroupName(experimentId: string): string {
  if (!/^[A-Za-z0-9_.:-]+$/.test(experimentId)) throw new Error(`unsafe experiment id "${experimentId}"`);
  return `run-${experimentId}`;
}

/** The containment of an experiment's run on this worker, without creating anything (reconcile reads it). */
export function runContainmentOf(support: ContainmentSupport, experimentId: string): RunContainment {
  if (support.cgroups) {
    const cgroup = runCgroupOf(support.cgroups, runCgroupName(experimentId));
    const memoryDir =
      support.cgroups.version === 2
        ? cgroup.dirs[0]!
        : path.join(support.cgroups.parents.memory!, runCgroupName(experimentId));
    return { kind: support.cgroups.version === 2 ? 'cgroup-v2' : 'cgroup-v1', cgroup, memoryDir };
  }
  return { kind: support.pidNamespace ? 'pid-namespace' : 'process-group', cgroup: null, memoryDir: null };
}

/**
 * Creates the run's containment before its training process starts. A cgroup left by an earlier
 * attempt of the same experiment is emptied and reused. Falls back when the cgroup cannot be made.
 */
export async function createRunContainment(support: ContainmentSupport, experimentId: string): Promise<RunContainment> {
  const planned = runContainmentOf(support, experimentId);
  if (!planned.cgroup) return planned;
  await killCgroup(planned.cgroup, { timeoutMs: 10_000 });
  let ok = true;
  for (const dir of planned.cgroup.dirs) if (!(await tryMkdir(dir))) ok = false;
  if (ok) return planned;
  await removeCgroup(planned.cgroup);
  return runContainmentOf({ ...support, cgroups: null }, experimentId);
}

interface ProcEntry {
  pid: number;
  pgrp: number;
  zombie: boolean;
}

async function processTable(): Promise<ProcEntry[]> {
  const entries = await fs.readdir('/proc').catch(() => [] as string[]);
  const table: ProcEntry[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => null);
    if (!stat) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    table.push({ pid: Number(name), pgrp: Number(fields[2]), zombie: fields[0] === 'Z' });
  }
  return table;
}

async function pidNamespaceOf(pid: number): Promise<string | null> {
  return fs.readlink(`/proc/${pid}/ns/pid`).catch(() => null);
}

/** Where a run's processes are looked for beyond its cgroup: the supervisor's group, its PID namespace. */
export interface RunProcessesRef {
  supervisorPid: number;
  /** The `pid:[inode]` of the run's PID namespace, when it has one. */
  pidNamespace?: string | null;
}

/**
 * The live processes of a run (zombies excluded): the members of its cgroup; without a cgroup, the
 * members of its PID namespace and of the supervisor's process group. Empty means nothing is left.
 */
export async function runProcessesLeft(containment: RunContainment, ref: RunProcessesRef): Promise<number[]> {
  if (containment.cgroup) return (await cgroupMembers(containment.cgroup.dirs)).filter((pid) => processAlive(pid));
  const table = (await processTable()).filter((p) => !p.zombie);
  const left = new Set(table.filter((p) => p.pgrp === ref.supervisorPid).map((p) => p.pid));
  if (ref.pidNamespace) {
    for (const p of table) if ((await pidNamespaceOf(p.pid)) === ref.pidNamespace) left.add(p.pid);
  }
  return [...left];
}

function signalEach(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone already
    }
  }
}

/** Asks every process of the run except `except` (the supervisor) to stop (SIGTERM before the kill). */
export async function signalRun(
  containment: RunContainment,
  ref: RunProcessesRef,
  signal: NodeJS.Signals,
  except?: number,
): Promise<void> {
  signalEach(
    (await runProcessesLeft(containment, ref)).filter((pid) => pid !== except),
    signal,
  );
}

/**
 * SIGKILLs every process of the run (sparing `except`, the supervisor, while it must still report)
 * and returns once none is left, or false after `timeoutMs` with some still there.
 */
export async function killRun(
  containment: RunContainment,
  ref: RunProcessesRef,
  options: { except?: number; timeoutMs?: number } = {},
): Promise<boolean> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (containment.cgroup) {
    await killCgroup(containment.cgroup, { except: options.except ?? null, timeoutMs });
  } else {
    const deadline = Date.now() + timeoutMs;
    for (let round = 0; Date.now() < deadline; round++) {
      const left = (await runProcessesLeft(containment, ref)).filter((pid) => pid !== options.except);
      if (left.length === 0) break;
      signalEach(left, 'SIGKILL');
      await new Promise((r) => setTimeout(r, Math.min(200, 10 * (round + 1))));
    }
  }
  const left = (await runProcessesLeft(containment, ref)).filter((pid) => pid !== options.except);
  return left.length === 0;
}

/** Removes the run's cgroup (once empty); a no-op without one. */
export async function removeRunContainment(containment: RunContainment): Promise<boolean> {
  return containment.cgroup ? removeCgroup(containment.cgroup) : true;
}

async function readNumber(file: string): Promise<number | null> {
  const text = await fs.readFile(file, 'utf8').catch(() => null);
  const value = text === null ? NaN : Number(text.trim());
  return Number.isFinite(value) ? value : null;
}

async function readKey(file: string, key: string): Promise<number | null> {
  const text = await fs.readFile(file, 'utf8').catch(() => null);
  const match = text === null ? null : new RegExp(`^${key}\\s+(\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : null;
}

/** The run cgroup's peak memory and OOM-kill count (evidence for the record); nulls where the host does not say. */
export async function memoryEvidence(
  containment: RunContainment,
): Promise<{ peakMemoryBytes: number | null; oomKills: number | null }> {
  const dir = containment.memoryDir;
  if (!dir) return { peakMemoryBytes: null, oomKills: null };
  if (containment.kind === 'cgroup-v2') {
    return {
      peakMemoryBytes: await readNumber(path.join(dir, 'memory.peak')),
      oomKills: await readKey(path.join(dir, 'memory.events'), 'oom_kill'),
    };
  }
  return {
    peakMemoryBytes: await readNumber(path.join(dir, 'memory.max_usage_in_bytes')),
    oomKills: await readKey(path.join(dir, 'memory.oom_control'), 'oom_kill'),
  };
}

/** Run cgroups of this worker that exist on the host, by experiment id. */
export async function existingRunCgroups(support: ContainmentSupport): Promise<string[]> {
  const parent = support.cgroups ? (support.cgroups.parents.unified ?? support.cgroups.parents.freezer) : null;
  if (!parent) return [];
  const entries = await fs.readdir(parent, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && e.name.startsWith('run-')).map((e) => e.name.slice('run-'.length));
}

/** Removes this worker's (empty) cgroup parents, e.g. when a work directory is retired; false if runs remain. */
export async function removeWorkerCgroups(support: ContainmentSupport): Promise<boolean> {
  if (!support.cgroups) return true;
  if ((await existingRunCgroups(support)).length > 0) return false;
  const { memory, pids, freezer, unified } = support.cgroups.parents;
  let ok = true;
  for (const dir of [memory, pids, freezer, unified]) {
    if (dir) await fs.rmdir(dir).catch((error: NodeJS.ErrnoException) => (ok = ok && error.code === 'ENOENT'));
  }
  return ok;
}
