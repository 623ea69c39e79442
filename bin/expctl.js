#!/usr/bin/env node
// Runs the TypeScript CLI directly from source through tsx's loader, so there is no build step to forget.
import { register } from 'tsx/esm/api';

// State is private to the user (src/security/files.ts sets modes explicitly); this umask is the
// backstop for every file this process and its children (Temporal server, git, training) create.
process.umask(0o077);

if (process.argv[2] === 'dev') {
  // `expctl dev` exits 0 on SIGINT/SIGTERM at any moment; while the CLI still loads nothing is
  // started yet, so exiting is all there is to do. The dev command takes these handlers over.
  const exitNow = Object.assign(() => process.exit(0), { expctlEarlyExit: true });
  process.on('SIGINT', exitNow);
  process.on('SIGTERM', exitNow);
}
register();
await import('../src/cli/main.ts');
