import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { isRunning } from './processes.js';

/**
 * How every expctl command finds the stack it talks to, whatever its current directory (an agent
 * works in its own repository, never in expctl's). In this order:
 *
 *  1. What the user set: EXPCTL_HOME (the stack's state directory: keyring, credential, catalog,
 *     and the address of the `expctl dev` running there), or TEMPORAL_ADDRESS (with its keyring
 *     in EXPCTL_KEY_FILE / EXPCTL_KEY_COMMAND), or a Temporal profile (TEMPORAL_CONFIG_FILE,
 *     TEMPORAL_PROFILE). These always win; the pointer below is then not read, except that a
 *     TEMPORAL_ADDRESS naming the pointer's own server still finds that stack's state.
 *  2. The stack pointer: `expctl dev` records its running stack in $XDG_STATE_HOME/expctl/stack.json
 *     (default ~/.local/state/expctl/stack.json, private to the user), and removes it when it stops.
 *     A pointer whose `expctl dev` is gone (same pid and process start time rule as the dev lock)
 *     is stale and ignored.
 *  3. ./.expctl of the current directory (where `expctl dev` / `npm start` keeps its state when
 *     started there).
 */

const StackPointerSchema = z.strictObject({
  version: z.literal(1),
  /** The `expctl dev` process, by pid and start time: the pointer is live only while it runs. */
  pid: z.number().int().positive(),
  startTime: z.string().nullable(),
  /** Its state directory (EXPCTL_HOME). */
  home: z.string().min(1),
  /** Its Temporal frontend (host:port) and namespace. */
  address: z.string().min(1),
  namespace: z.string().min(1),
  uiUrl: z.string(),
  /** The payload keyring file it encrypts with, or null where it reads EXPCTL_KEY_COMMAND. */
  keyFile: z.string().nullable(),
  /** The operating record: the SQLite file or the PostgreSQL URL. */
  catalog: z.string().min(1),
  /** The Web UI's codec endpoint, once the stack is up. */
  codecEndpoint: z.string().nullable(),
  startedAt: z.string(),
});
export type StackPointer = z.output<typeof StackPointerSchema>;

/** Where the pointer is: $XDG_STATE_HOME/expctl/stack.json, else ~/.local/state/expctl/stack.json. */
export function stackPointerPath(env: NodeJS.ProcessEnv = process.env): string {
  const stateHome = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(path.resolve(stateHome), 'expctl', 'stack.json');
}

/** The pointer as written, running or not; undefined when there is none or it is not one. */
function readPointerFile(file: string): StackPointer | undefined {
  try {
    const parsed = StackPointerSchema.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The running stack the pointer names; undefined when there is none, or its `expctl dev` is gone. */
export function readStackPointer(env: NodeJS.ProcessEnv = process.env): StackPointer | undefined {
  const pointer = readPointerFile(stackPointerPath(env));
  return pointer && isRunning({ pid: pointer.pid, startTime: pointer.startTime }) ? pointer : undefined;
}

/**
 * Records `pointer` as this user's stack (0600 in a 0700 directory, replaced atomically), unless
 * the pointer names another `expctl dev` that still runs: the first stack started keeps it.
 * Returns whether this one is now the user's stack.
 */
export function writeStackPointer(pointer: StackPointer, env: NodeJS.ProcessEnv = process.env): boolean {
  const file = stackPointerPath(env);
  const current = readStackPointer(env);
  if (current && current.pid !== pointer.pid) return false;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const partial = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(partial, `${JSON.stringify(pointer, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(partial, file);
  return true;
}

/** Removes the pointer if it names the `expctl dev` of `pid` (another stack's is left alone). */
export function removeStackPointer(pid: number, env: NodeJS.ProcessEnv = process.env): void {
  const file = stackPointerPath(env);
  if (readPointerFile(file)?.pid === pid) fs.rmSync(file, { force: true });
}

export type StackSource = 'environment' | 'pointer' | 'current directory';

export interface StackLocation {
  /** What decided: the user's settings, the stack pointer, or the current directory's .expctl. */
  source: StackSource;
  /** The settings the pointer supplies (empty unless source is 'pointer'). */
  settings: Record<string, string>;
  pointer?: StackPointer;
}

const has = (env: NodeJS.ProcessEnv, name: string) => (env[name] ?? '') !== '';

/** Where the stack is, by the order above; pure apart from reading the pointer. */
export function locateStack(env: NodeJS.ProcessEnv = process.env): StackLocation {
  if (has(env, 'EXPCTL_HOME')) return { source: 'environment', settings: {} };
  const server = has(env, 'TEMPORAL_ADDRESS') || has(env, 'TEMPORAL_PROFILE') || has(env, 'TEMPORAL_CONFIG_FILE');
  const pointer = readStackPointer(env);
  if (!pointer) return { source: server ? 'environment' : 'current directory', settings: {} };
  if (server && env.TEMPORAL_ADDRESS !== pointer.address) return { source: 'environment', settings: {} };
  const settings: Record<string, string> = { EXPCTL_HOME: pointer.home };
  if (!has(env, 'TEMPORAL_NAMESPACE')) settings.TEMPORAL_NAMESPACE = pointer.namespace;
  if (pointer.keyFile && !has(env, 'EXPCTL_KEY_FILE') && !has(env, 'EXPCTL_KEY_COMMAND'))
    settings.EXPCTL_KEY_FILE = pointer.keyFile;
  if (!has(env, 'EXPCTL_CATALOG') && !has(env, 'EXPCTL_CATALOG_URL'))
    settings[/^postgres(ql)?:\/\//.test(pointer.catalog) ? 'EXPCTL_CATALOG_URL' : 'EXPCTL_CATALOG'] = pointer.catalog;
  return { source: 'pointer', settings, pointer };
}

let located: StackLocation | undefined;

/**
 * Finds the stack once for this process (an expctl command) and puts what the pointer supplies
 * into `env`, so every setting read later (state directory, keyring, catalog, address) agrees.
 */
export function useStack(env: NodeJS.ProcessEnv = process.env): StackLocation {
  located = locateStack(env);
  Object.assign(env, located.settings);
  return located;
}

/** How this process found its stack (useStack), or undefined where it did not look. */
export function stackLocation(): StackLocation | undefined {
  return located;
}

/** What to tell a user whose command found no stack: how to start one, or point at one. */
export function noStackHint(env: NodeJS.ProcessEnv = process.env): string {
  return (
    `No running expctl stack was found for this user (${stackPointerPath(env)} names none, and neither ` +
    'EXPCTL_HOME nor TEMPORAL_ADDRESS is set). Start one with `expctl dev` (`npm start` in the expctl ' +
    'checkout), or point at one: EXPCTL_HOME=<its state directory>, or TEMPORAL_ADDRESS=HOST:PORT with ' +
    'EXPCTL_KEY_FILE=<its payload keyring>.'
  );
}
