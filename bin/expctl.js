#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm install` or `npm run build`) while it is as new as
// every source file; otherwise the TypeScript sources through tsx's loader, so an edit is never
// run stale. Compiled, a command does not transpile the whole CLI at every start.
import fs from 'node:fs';

// State is private to the user (src/security/files.ts sets modes explicitly); this umask is the
// backstop for every file this process and its children (Temporal server, git, training) create.
process.umask(0o077);

if (process.argv[2] === 'dev') {
  // `expctl dev` exits 0 on SIGINT/SIGTERM/SIGHUP at any moment; while the CLI still loads nothing
  // is started yet, so exiting is all there is to do. The dev command takes these handlers over.
  const exitNow = Object.assign(() => process.exit(0), { expctlEarlyExit: true });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, exitNow);
}
/** The newest modification time of a file under `dir` (a few milliseconds for the sources). */
function newestMtime(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile())
      newest = Math.max(newest, fs.statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
  }
  return newest;
}

function compiledIsCurrent() {
  if (process.env.EXPCTL_FROM_SOURCE === '1') return false;
  try {
    const built = fs.statSync(new URL('../dist/.built', import.meta.url)).mtimeMs;
    return built >= newestMtime(new URL('../src', import.meta.url).pathname);
  } catch {
    return false; // not built
  }
}

if (compiledIsCurrent()) {
  await import('../dist/cli/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
