import type { Command } from 'commander';
import { lazy } from '../options.js';

/** The `expctl` commands of install-seaweedfs: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/install-seaweedfs.js');
const installSeaweedFsCommand = lazy(load, 'installSeaweedFsCommand');

export function declareInstallSeaweedFs(program: Command): void {
  program
    .command('install-seaweedfs')
    .description(
      'make the pinned SeaweedFS (an S3-compatible server, for the store tests and benchmark) available: built with Go once, cached per user; print its path',
    )
    .action(() => installSeaweedFsCommand());
}
