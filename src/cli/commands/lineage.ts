import { LINEAGE_REF_TEXT, parseLineageRef, renderLineage, type Direction } from '../../domain/lineage.js';
import { openCatalog } from '../catalog-view.js';
import { CliError, printJson, safeText, wantsJson } from '../output.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

/** `lineage REF [--upstream|--downstream]`: what made it and what it went into, from the catalog. */
export async function lineageCommand(
  text: string,
  options: { upstream?: boolean; downstream?: boolean; json?: boolean },
): Promise<void> {
  const ref = parseLineageRef(text);
  if (!ref) throw new CliError(`${JSON.stringify(safeText(text))} is not ${LINEAGE_REF_TEXT}`);
  const directions: Direction[] =
    options.upstream && !options.downstream
      ? ['upstream']
      : options.downstream && !options.upstream
        ? ['downstream']
        : ['upstream', 'downstream'];
  const answer = (await (await openCatalog()).lineage(text, directions))!;
  const trees = answer.trees;
  if (wantsJson(options)) return printJson({ ref: text, known: answer.known, ...trees });
  if (!answer.known) process.exitCode = EXIT_CODES.internal_error;
  for (const direction of directions) {
    console.log(direction === 'upstream' ? 'upstream (what made it):' : 'downstream (what it went into):');
    for (const line of renderLineage(trees[direction]!)) console.log(safeText(`  ${line}`));
  }
}
