import type { Client } from '@temporalio/client';
import { CatalogView } from '../client/catalog.js';
import { catalogPath } from '../shared/settings.js';
import { connectClient } from '../temporal/connection.js';
import { CliError } from './output.js';
import { failureOf } from './failure.js';

/**
 * The operating record for one command, read-only: the catalog file when it is on this host
 * (EXPCTL_CATALOG, else the state directory's), otherwise the orchestrator, asked through the
 * control queue, so every read works from any host that reaches Temporal.
 */
export function openCatalog(client?: Client): Promise<CatalogView> {
  return CatalogView.open(async () => {
    if (client) return client; // the command's own connection: one per command
    try {
      return await connectClient();
    } catch (error) {
      // As what it is: no keyring (no stack found) is permission_denied, no server unavailable.
      const cause = failureOf(error);
      throw new CliError(
        `no catalog at ${catalogPath()} on this host (EXPCTL_CATALOG names the file), so the orchestrator ` +
          `was to be asked through Temporal, which failed: ${cause.message}`,
        cause.exitCode,
        cause.code,
      );
    }
  });
}
