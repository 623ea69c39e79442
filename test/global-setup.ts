import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { execa } from 'execa';
import type { TestProject } from 'vitest/node';
import { createKeyring } from '../src/security/keyring.js';
import { ensureUnsealingKey } from '../src/security/sealed-secrets.js';
import { startDevServer, type DevServer } from '../src/temporal/dev-server.js';
import { freePort } from '../src/shared/ports.js';
import { ensureTemporalCli } from '../src/temporal/temporal-cli.js';
import { WORKFLOW_INTERCEPTOR_MODULES, WORKFLOWS_PATH } from '../src/roots/orchestrator.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalCli: string;
    /** The payload keyring every test process uses (test/setup-env.ts makes it EXPCTL_KEY_FILE). */
    keyFile: string;
    /** The workers' sealing key pair every test process uses (test/setup-env.ts makes it EXPCTL_SEAL_*_FILE). */
    sealKeyFiles: { EXPCTL_SEAL_KEY_FILE: string; EXPCTL_SEAL_PUBLIC_KEY_FILE: string };
    /** Path of a headless Chromium, or '' when none could be provided (those tests are skipped). */
    chromium: string;
    /** The workflow code bundled once for the run (test/helpers/stack.ts hands it to every orchestrator). */
    workflowBundleFile: string;
    /** Where test/setup-env.ts makes each test file's own XDG_STATE_HOME (so no stack pointer is shared). */
    stateHomes: string;
  }
}

const INSTALL_CHROMIUM = fileURLToPath(new URL('../scripts/install-chromium', import.meta.url));
/** What a skipped browser test tells the reader to run. */
const CHROMIUM_INSTALL_HINT = 'scripts/install-chromium (as root), or apt-get install chromium';

let server: DevServer | undefined;
let dir: string | undefined;

/**
 * The project's own provisioning, as for the Temporal CLI: a browser on PATH, else Debian's
 * chromium installed with apt-get where the tests run as root, else none (and a clear skip).
 */
async function provideChromium(): Promise<string> {
  const result = await execa(INSTALL_CHROMIUM, [], { reject: false, stderr: 'inherit', timeout: 15 * 60_000 });
  if (result.exitCode === 0 && result.stdout.trim()) return result.stdout.trim().split('\n').pop()!;
  console.error(
    `expctl tests: no Chromium, so the HTML report test is SKIPPED; install it with ${CHROMIUM_INSTALL_HINT}.`,
  );
  return '';
}

/** One real Temporal dev server for the whole run, on free ports, with its own SQLite file. */
export async function setup(project: TestProject): Promise<void> {
  const [binary, chromium] = await Promise.all([ensureTemporalCli(), provideChromium()]);
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-test-temporal-'));
  server = await startDevServer({
    binary,
    dbFile: path.join(dir, 'temporal.db'),
    ip: '127.0.0.1',
    grpcPort: await freePort(),
    uiPort: await freePort(),
    logFile: path.join(dir, 'temporal.log'),
  });
  project.provide('temporalAddress', server.address);
  project.provide('temporalCli', binary);
  project.provide('keyFile', (await createKeyring(path.join(dir, 'keys', 'payload-keys.json'))).file);
  const sealKeyFiles = {
    EXPCTL_SEAL_KEY_FILE: path.join(dir, 'keys', 'worker-seal.key'),
    EXPCTL_SEAL_PUBLIC_KEY_FILE: path.join(dir, 'keys', 'worker-seal.pub'),
  };
  await ensureUnsealingKey(sealKeyFiles);
  project.provide('sealKeyFiles', sealKeyFiles);
  project.provide('chromium', chromium);
  const stateHomes = path.join(dir, 'state-homes');
  await fs.mkdir(stateHomes, { mode: 0o700 });
  project.provide('stateHomes', stateHomes);
  // Bundled once here rather than once per test file (seconds of CPU each on a 2-core machine).
  const bundle = await bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES,
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error: console.error } as never,
  });
  const bundleFile = path.join(dir, 'workflow-bundle.js');
  await fs.writeFile(bundleFile, bundle.code);
  project.provide('workflowBundleFile', bundleFile);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
}
