import fs from 'node:fs';
import { Catalog } from '../catalog/catalog.js';
import { catalogPath } from '../shared/settings.js';
import { CliError } from './output.js';

/**
 * The catalog the CLI reads directly (WAL mode: safe while the orchestrator writes): the file at
 * EXPCTL_CATALOG or in the state directory. Reading never
 * creates one, so a command run in the wrong directory says so instead of showing an empty record.
 */
export function existingCatalog(): Catalog | undefined {
  const file = catalogPath();
  return fs.existsSync(file) ? new Catalog(file) : undefined;
}

export function requireCatalog(): Catalog {
  const catalog = existingCatalog();
  if (!catalog) {
    throw new CliError(
      `no catalog at ${catalogPath()}: run this where \`expctl dev\` or \`expctl orchestrator\` keeps its state (EXPCTL_HOME), or set EXPCTL_CATALOG`,
    );
  }
  return catalog;
}
