import fs from 'node:fs/promises';
import path from 'node:path';
import type { ArtifactRecord } from '../../catalog/record.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';
import { storeOfObjectUri } from '../../store/object-uri.js';
import { openStore } from '../../store/open.js';
import { isStoreError } from '../../store/store.js';
import { openCatalog } from '../catalog-view.js';
import { CliError, formatTable, printJson, safeText, wantsJson } from '../output.js';
import { checkExperimentId } from './experiments.js';

interface ArtifactsOptions {
  get?: string;
  out?: string;
  json?: boolean;
}

/** `artifacts ID [--get PATH --out FILE]`: a run's artifacts from the record, or one fetched from the fleet store. */
export async function artifactsCommand(id: string, options: ArtifactsOptions): Promise<void> {
  checkExperimentId(id);
  if ((options.get === undefined) !== (options.out === undefined))
    throw new CliError(
      '--get PATH and --out FILE go together: name the artifact and where to write it',
      EXIT_CODES.validation_failed,
    );
  const artifacts = await recordedArtifacts(id);
  if (options.get === undefined) return listArtifacts(id, artifacts, options);
  const artifact = artifacts.find((a) => a.path === options.get);
  if (!artifact)
    throw new CliError(
      `experiment ${id} has no artifact ${JSON.stringify(safeText(options.get))} (it has ${artifacts.map((a) => a.path).join(', ') || 'none'})`,
      EXIT_CODES.validation_failed,
    );
  const out = path.resolve(options.out!);
  await fetchArtifact(id, artifact, out);
  if (wantsJson(options)) return printJson({ experimentId: id, ...artifact, out });
  console.log(safeText(`${artifact.path} (${artifact.bytes} B, sha256 ${artifact.sha256}) written to ${out}`));
}

async function recordedArtifacts(id: string): Promise<ArtifactRecord[]> {
  const catalog = await openCatalog();
  try {
    const record = await catalog.experiment(id);
    if (!record) throw new CliError(`no experiment ${id} in ${catalog.source}`, EXIT_CODES.validation_failed);
    return record.artifacts.map((a) => ({ ...a, uri: a.uri ?? null }));
  } finally {
    await catalog.close();
  }
}

function listArtifacts(id: string, artifacts: ArtifactRecord[], options: ArtifactsOptions): void {
  if (wantsJson(options)) return printJson({ experimentId: id, artifacts });
  if (artifacts.length === 0) return console.log(safeText(`experiment ${id} recorded no artifacts`));
  console.log(
    formatTable(
      ['path', 'bytes', 'sha256', 'uri'],
      artifacts.map((a) => [a.path, a.bytes, a.sha256, a.uri ?? 'not in the store']),
    ),
  );
}

/** Writes the stored object to `out` (through a temporary file), refused unless its bytes hash to the record's sha256. */
async function fetchArtifact(id: string, artifact: ArtifactRecord, out: string): Promise<void> {
  if (artifact.uri === null)
    throw new CliError(
      `${artifact.path} of ${id} is not in the fleet store: recorded before the store, or its upload failed (see the record's storeProblems)`,
      EXIT_CODES.infrastructure,
    );
  if ((await fs.stat(out).catch(() => undefined))?.isDirectory())
    throw new CliError(`--out ${out} is a directory: name the file to write`, EXIT_CODES.validation_failed);
  const stat = await fs.stat(path.dirname(out)).catch(() => undefined);
  if (!stat?.isDirectory())
    throw new CliError(`--out ${out}: its directory ${path.dirname(out)} does not exist`, EXIT_CODES.validation_failed);
  const store = await openStore({ ...process.env, EXPCTL_STORE: storeOfObjectUri(artifact.uri, artifact.sha256) });
  try {
    await store.getFile(artifact.sha256, out);
  } catch (error) {
    if (isStoreError(error))
      throw new CliError(`${artifact.path} of ${id}: ${error.message}`, EXIT_CODES.infrastructure);
    throw error;
  }
}
