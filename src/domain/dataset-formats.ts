/**
 * What a shard's bytes hold: record count and schema, by format. Pure (text in, facts out); the
 * ingest activity reads the file. JSONL: records = non-empty lines, schema = field → JSON type.
 * CSV/TSV: the header is the schema (every column "string": the format has no types), rows are
 * records (quoted fields may span lines). Parquet (autoresearch's shard format): num_rows and the
 * top-level columns from the footer alone (hyparquet), so a large shard is never read whole.
 * Anything else: bytes only, records unknown.
 */
import { parquetMetadata } from 'hyparquet';
import type { IngestedShard, Schema } from './datasets.js';

export type ShardFormat = IngestedShard['format'];

/** The format by file extension (a trailing `.sha256`-less name; compression is not read). */
export function formatOf(fileName: string): ShardFormat {
  const ext = /\.([A-Za-z0-9]+)$/.exec(fileName)?.[1]?.toLowerCase();
  if (ext === 'jsonl' || ext === 'ndjson') return 'jsonl';
  if (ext === 'csv') return 'csv';
  if (ext === 'tsv') return 'tsv';
  if (ext === 'parquet') return 'parquet';
  return 'bytes';
}

/** A malformed shard of a known format: the ingest records it as unreadable (records and schema unknown). */
export class ShardFormatError extends Error {}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value; // string, number, boolean, object
}

/** Field → type over every record; a field seen with several non-null types is "a|b" (sorted), null-only is "null". */
export function inspectJsonl(text: string): { records: number; schema: Schema } {
  const types = new Map<string, Set<string>>();
  let records = 0;
  const lines = text.split('\n');
  lines.forEach((line, at) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new ShardFormatError(`line ${at + 1} is not JSON`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw new ShardFormatError(`line ${at + 1} is not a JSON object`);
    records++;
    for (const [field, fieldValue] of Object.entries(value)) {
      const seen = types.get(field) ?? new Set<string>();
      seen.add(jsonType(fieldValue));
      types.set(field, seen);
    }
  });
  const schema: Schema = {};
  for (const field of [...types.keys()].sort()) {
    const seen = [...types.get(field)!];
    const nonNull = seen.filter((type) => type !== 'null').sort();
    schema[field] = nonNull.length ? nonNull.join('|') : 'null';
  }
  return { records, schema };
}

/** Splits delimited text into rows of fields, RFC 4180 quoting (quoted fields may hold the delimiter, quotes and newlines). */
export function parseDelimited(text: string, delimiter: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  const endRow = () => {
    row.push(field);
    if (!(row.length === 1 && row[0] === '')) rows.push(row);
    row = [];
    field = '';
  };
  while (i < text.length) {
    const char = text[i]!;
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') ((field += '"'), (i += 2));
      else if (char === '"') ((quoted = false), i++);
      else ((field += char), i++);
    } else if (char === '"' && field === '') ((quoted = true), i++);
    else if (char === delimiter) (row.push(field), (field = ''), i++);
    else if (char === '\n' || char === '\r') {
      endRow();
      i += char === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else ((field += char), i++);
  }
  if (quoted) throw new ShardFormatError('a quoted field is not closed');
  if (field !== '' || row.length > 0) endRow();
  return rows;
}

/** Header → schema (every column "string"), data rows → records. */
export function inspectDelimited(text: string, delimiter: ',' | '\t'): { records: number; schema: Schema } {
  const rows = parseDelimited(text, delimiter);
  if (rows.length === 0) throw new ShardFormatError('no header row');
  const header = rows[0]!;
  const seen = new Set<string>();
  for (const column of header) {
    if (seen.has(column)) throw new ShardFormatError(`column ${JSON.stringify(column)} appears twice in the header`);
    seen.add(column);
  }
  const bad = rows.findIndex((row) => row.length !== header.length);
  if (bad > 0)
    throw new ShardFormatError(`row ${bad + 1} has ${rows[bad]!.length} fields, the header ${header.length}`);
  return { records: rows.length - 1, schema: Object.fromEntries(header.map((column) => [column, 'string'])) };
}

/** How many bytes at the end of a Parquet file hold its footer (metadata + length + "PAR1"), from its last 8 bytes. */
export function parquetFooterLength(last8: Uint8Array): number {
  const view = new DataView(last8.buffer, last8.byteOffset, last8.byteLength);
  if (last8.byteLength !== 8 || view.getUint32(4, true) !== 0x31524150)
    throw new ShardFormatError('not a Parquet file (no PAR1 at the end)');
  return view.getUint32(0, true) + 8;
}

/**
 * Rows and top-level columns from a Parquet footer (the file's last bytes, at least the footer).
 * A column's type is its logical or converted type where it has one (UTF8 → "string"), else its
 * physical type, lowercased ("int64", "double"); a nested column is "group".
 */
export function inspectParquetFooter(tail: Uint8Array): { records: number; schema: Schema } {
  let metadata;
  try {
    metadata = parquetMetadata(tail);
  } catch (error) {
    throw new ShardFormatError(`unreadable Parquet footer: ${(error as Error).message}`);
  }
  const elements = metadata.schema;
  const schema: Schema = {};
  let at = 1;
  const skip = (): void => {
    const element = elements[at++]!;
    for (let i = 0; i < (element.num_children ?? 0); i++) skip();
  };
  for (let child = 0; child < (elements[0]?.num_children ?? 0) && at < elements.length; child++) {
    const element = elements[at]!;
    if (element.num_children) {
      schema[element.name] = 'group';
      skip();
      continue;
    }
    const type = String(
      element.logical_type?.type ?? element.converted_type ?? element.type ?? 'unknown',
    ).toLowerCase();
    schema[element.name] = type === 'utf8' ? 'string' : type;
    at++;
  }
  return { records: Number(metadata.num_rows), schema };
}

/** Records and schema of a shard's content by its format; null for bytes-only formats. */
export function inspectContent(format: ShardFormat, content: Buffer): { records: number; schema: Schema } | null {
  if (format === 'bytes') return null;
  if (format === 'parquet') return inspectParquetFooter(content);
  const text = content.toString('utf8');
  if (format === 'jsonl') return inspectJsonl(text);
  return inspectDelimited(text, format === 'csv' ? ',' : '\t');
}
