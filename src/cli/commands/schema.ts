import { OUTPUT_SCHEMAS, outputJsonSchema, type OutputName } from '../output-schemas.js';
import { CliError, safeJson, safeText, wantsJson } from '../output.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

const NAMES = Object.keys(OUTPUT_SCHEMAS) as OutputName[];

/**
 * `schema [NAME]`: the JSON Schema of a command's `--json` output, or the outputs there are.
 * Printed as it is: a JSON Schema's own keywords (`additionalProperties`) are not output fields.
 */
export function schemaCommand(name: string | undefined, options: { json?: boolean }): void {
  if (name === undefined) {
    if (wantsJson(options)) return void process.stdout.write(`${safeJson({ outputs: NAMES })}\n`);
    return console.log(`outputs (expctl schema NAME prints one's JSON Schema):\n  ${NAMES.join('\n  ')}`);
  }
  if (!(NAMES as string[]).includes(name))
    throw new CliError(
      `no output named ${JSON.stringify(safeText(name))}; one of ${NAMES.join(', ')}`,
      EXIT_CODES.validation_failed,
    );
  process.stdout.write(`${safeJson(outputJsonSchema(name as OutputName))}\n`);
}
