import { catalogLineageSource } from '../../catalog/lineage-source.js';
import { LINEAGE_REF_TEXT, lineage, parseLineageRef, renderLineage, type Direction } from '../../domain/lineage.js';
import { requireCatalog } from '../catalog-file.js';
import { CliError, printJson, safeText, wantsJson } from '../output.js';

/** `lineage REF [--upstream|--downstream]`: what made it and what it went into, from the catalog. */
export function lineageCommand(
  text: string,
  options: { upstream?: boolean; downstream?: boolean; json?: boolean },
): void {
  const ref = parseLineageRef(text);
  if (!ref) throw new CliError(`${JSON.stringify(safeText(text))} is not ${LINEAGE_REF_TEXT}`);
  const directions: Direction[] =
    options.upstream && !options.downstream
      ? ['upstream']
      : options.downstream && !options.upstream
        ? ['downstream']
        : ['upstream', 'downstream'];
  const source = catalogLineageSource(requireCatalog());
  const trees = Object.fromEntries(directions.map((direction) => [direction, lineage(source, ref, direction)]));
  const root = Object.values(trees)[0]!;
  if (wantsJson(options)) return printJson({ ref: text, known: root.known, ...trees });
  if (!root.known) process.exitCode = 1;
  for (const direction of directions) {
    console.log(direction === 'upstream' ? 'upstream (what made it):' : 'downstream (what it went into):');
    for (const line of renderLineage(trees[direction]!)) console.log(safeText(`  ${line}`));
  }
}
