import type { Connection } from '@temporalio/client';
import { connectClient, connectionSettings } from '../../temporal/connection.js';
import { ensureSearchAttributes } from '../../temporal/setup.js';

/** `expctl setup`: registers expctl's search attributes on a real cluster's namespace. */
export async function setupCommand(): Promise<void> {
  const client = await connectClient();
  const { namespace } = connectionSettings();
  const added = await ensureSearchAttributes(client.connection as Connection, namespace);
  console.log(
    added.length
      ? `registered ${added.join(', ')} in namespace ${namespace}`
      : `search attributes already registered in namespace ${namespace}`,
  );
}
