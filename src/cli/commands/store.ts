import { formatBytes } from '../../domain/bounds.js';
import { WorkflowFailedError } from '@temporalio/client';
import type { StoreGcReport } from '../../activities/store.js';
import { formatDuration, parseDuration } from '../../domain/duration.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';
import { openStore } from '../../store/open.js';
import { OBJECT_KINDS, storeUsage } from '../../store/references.js';
import { connectClient } from '../../temporal/connection.js';
import { collectStoreGarbage } from '../../client/store.js';
import { CliError, formatTable, printJson, wantsJson } from '../output.js';

/** What `store gc` keeps when no --older-than is given. */
export const DEFAULT_GC_OLDER_THAN = '30d';

/** `expctl store du`: read from the store this host reaches (EXPCTL_STORE), not through the orchestrator. */
export async function storeDuCommand(options: { json?: boolean }): Promise<void> {
  const usage = await storeUsage(await openStore());
  if (wantsJson(options)) return printJson(usage);
  console.log(
    `store ${usage.store}: ${usage.objects} objects, ${formatBytes(usage.bytes)}; ${usage.runs} runs, ${usage.documents} documents`,
  );
  console.log(
    formatTable(
      ['KIND', 'OBJECTS', 'BYTES', 'SIZE'],
      OBJECT_KINDS.map((kind) => [
        kind,
        usage.byKind[kind].objects,
        usage.byKind[kind].bytes,
        formatBytes(usage.byKind[kind].bytes),
      ]),
    ),
  );
}

/** `expctl store gc`: the orchestrator collects (only activities change state); this asks and reports. */
export async function storeGcCommand(options: { olderThan?: string; dryRun?: boolean; json?: boolean }): Promise<void> {
  let olderThanMs: number;
  try {
    olderThanMs = parseDuration(options.olderThan ?? DEFAULT_GC_OLDER_THAN);
  } catch (error) {
    throw new CliError(`--older-than: ${(error as Error).message}`, EXIT_CODES.validation_failed);
  }
  const client = await connectClient();
  let report: StoreGcReport;
  try {
    report = await collectStoreGarbage(client, { olderThanMs, dryRun: options.dryRun === true });
  } catch (error) {
    if (error instanceof WorkflowFailedError)
      throw new CliError(`store gc failed: ${((error.cause?.cause ?? error.cause ?? error) as Error).message}`);
    throw error;
  }
  if (wantsJson(options)) return printJson(report);
  const verb = report.dryRun ? 'would remove' : 'removed';
  console.log(
    `store ${report.store}${report.dryRun ? ' (dry run: nothing removed)' : ''}: older than ${formatDuration(report.olderThanMs)} (before ${report.cutoff})`,
  );
  console.log(
    `${verb} ${report.objectsDeleted} objects (${formatBytes(report.bytesDeleted)}) and ${report.documentsDeleted} documents of ${report.runsCollected.length} finished runs`,
  );
  for (const id of report.runsCollected) console.log(`  ${id}`);
  console.log(
    `kept ${report.objectsKept} objects (${formatBytes(report.bytesKept)}); ${report.runsRetained} runs retained`,
  );
}
