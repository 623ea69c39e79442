/**
 * A sealed dataset version's validation gates: named, pure, each with deterministic error codes.
 * A version is usable only when every gate passed. The activities feed them what the catalog
 * holds; the unit tests feed them by hand.
 */
import type { Schema } from './datasets.js';

export const GATES = ['integrity', 'completeness', 'schema', 'records'] as const;
export type Gate = (typeof GATES)[number];

/** Error codes, one per way a gate fails. */
export const GATE_CODES = {
  hashMismatch: 'integrity.hash_mismatch',
  missingShards: 'completeness.missing_shards',
  columnRemoved: 'schema.column_removed',
  typeChanged: 'schema.type_changed',
  inconsistentShards: 'schema.inconsistent_shards',
  unreadable: 'schema.unreadable',
  declaredMismatch: 'records.declared_mismatch',
  outOfTolerance: 'records.out_of_tolerance',
} as const;

/** How far a version's record count may move from the previous passed version's: ±50%. */
export const DEFAULT_RECORDS_TOLERANCE = 0.5;

export interface GateShard {
  index: number;
  sha256: string;
  declaredSha256: string;
  records: number | null;
  declaredRecords: number | null;
  schema: Schema | null;
  /** The shard's format ("jsonl", "csv", "tsv", "bytes"): a known format without a schema could not be read. */
  format?: string;
}

export interface GateInput {
  expectedShards: number;
  shards: GateShard[];
  /** The latest version of this dataset that passed every gate, before this one. */
  previousPassed: { version: number; records: number | null; schema: Schema | null } | null;
  recordsTolerance?: number;
}

export interface GateOutcome {
  gate: Gate;
  passed: boolean;
  /** Null when passed. */
  code: string | null;
  /** Why, in one sentence. */
  message: string;
}

/** How a gate fared over this dataset's earlier versions. */
export interface GateHistory {
  versions: number;
  passed: number;
  /** passed / versions; null before the first. */
  passRate: number | null;
}

const pass = (gate: Gate, message: string): GateOutcome => ({ gate, passed: true, code: null, message });
const fail = (gate: Gate, code: string, message: string): GateOutcome => ({ gate, passed: false, code, message });
const byIndex = (shards: GateShard[]) => [...shards].sort((a, b) => a.index - b.index);
const list = (items: (string | number)[]) =>
  items.length > 5 ? `${items.slice(0, 5).join(', ')}, …` : items.join(', ');

/** Every shard's content hash, as the store computed it, equals the one its producer declared. */
export function integrityGate(input: GateInput): GateOutcome {
  const bad = byIndex(input.shards).filter((shard) => shard.sha256 !== shard.declaredSha256);
  if (bad.length === 0) return pass('integrity', `all ${input.shards.length} shard hashes match what was declared`);
  const first = bad[0]!;
  return fail(
    'integrity',
    GATE_CODES.hashMismatch,
    `${bad.length} shard(s) differ from their declared sha256 (shards ${list(bad.map((s) => s.index))}); shard ${first.index} has ${first.sha256.slice(0, 12)}…, declared ${first.declaredSha256.slice(0, 12)}…`,
  );
}

/** All N shards arrived before the seal. */
export function completenessGate(input: GateInput): GateOutcome {
  const have = new Set(input.shards.map((shard) => shard.index));
  const missing: number[] = [];
  for (let i = 0; i < input.expectedShards; i++) if (!have.has(i)) missing.push(i);
  if (missing.length === 0) return pass('completeness', `all ${input.expectedShards} shards arrived`);
  return fail(
    'completeness',
    GATE_CODES.missingShards,
    `${missing.length} of ${input.expectedShards} shards missing at the seal (shards ${list(missing)})`,
  );
}

/** The schema of a version: its shards' (when consistent), else the first shard's. Null when no shard has one. */
export function versionSchema(shards: GateShard[]): Schema | null {
  return byIndex(shards).find((shard) => shard.schema !== null)?.schema ?? null;
}

const sameSchema = (a: Schema, b: Schema) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([field, type]) => b[field] === type);

/**
 * Shards agree on one schema, and it keeps every column of the previous passed version with the
 * same type (new columns are compatible). Shards of unknown format (no schema) are not compared.
 */
export function schemaGate(input: GateInput): GateOutcome {
  const unreadable = byIndex(input.shards).filter(
    (shard) => shard.schema === null && shard.format !== undefined && shard.format !== 'bytes',
  );
  if (unreadable.length > 0)
    return fail(
      'schema',
      GATE_CODES.unreadable,
      `shard(s) ${list(unreadable.map((s) => s.index))} could not be read as ${unreadable[0]!.format}`,
    );
  const withSchema = byIndex(input.shards).filter((shard) => shard.schema !== null);
  if (withSchema.length === 0) return pass('schema', 'no shard has a readable schema (bytes only); nothing to compare');
  const reference = withSchema[0]!;
  const odd = withSchema.filter((shard) => !sameSchema(shard.schema!, reference.schema!));
  if (odd.length > 0) {
    const other = odd[0]!;
    return fail(
      'schema',
      GATE_CODES.inconsistentShards,
      `shard ${other.index} has columns ${describe(other.schema!)}, shard ${reference.index} has ${describe(reference.schema!)}`,
    );
  }
  const schema = reference.schema!;
  const previous = input.previousPassed;
  if (!previous?.schema)
    return pass('schema', `${withSchema.length} shard(s) share one schema; no earlier passed version to compare with`);
  const removed = Object.keys(previous.schema).filter((field) => !(field in schema));
  if (removed.length > 0)
    return fail(
      'schema',
      GATE_CODES.columnRemoved,
      `column(s) ${list(removed)} of version ${previous.version} are missing`,
    );
  const changed = Object.keys(previous.schema).filter((field) => schema[field] !== previous.schema![field]);
  if (changed.length > 0) {
    const field = changed[0]!;
    return fail(
      'schema',
      GATE_CODES.typeChanged,
      `column ${field} was ${previous.schema[field]} in version ${previous.version}, is ${schema[field]} now${changed.length > 1 ? ` (and ${changed.length - 1} more)` : ''}`,
    );
  }
  const added = Object.keys(schema).filter((field) => !(field in previous.schema!));
  return pass(
    'schema',
    `compatible with version ${previous.version}${added.length ? ` (new columns ${list(added)})` : ''}`,
  );
}

/** Total records of a version; null when any shard's count is unknown. */
export function totalRecords(shards: GateShard[]): number | null {
  let total = 0;
  for (const shard of shards) {
    if (shard.records === null) return null;
    total += shard.records;
  }
  return total;
}

/** Declared counts match what was read, and the total is within the tolerance of the previous passed version's. */
export function recordsGate(input: GateInput): GateOutcome {
  const wrong = byIndex(input.shards).filter(
    (shard) => shard.declaredRecords !== null && shard.records !== null && shard.records !== shard.declaredRecords,
  );
  if (wrong.length > 0) {
    const first = wrong[0]!;
    return fail(
      'records',
      GATE_CODES.declaredMismatch,
      `shard ${first.index} has ${first.records} records, ${first.declaredRecords} declared${wrong.length > 1 ? ` (and ${wrong.length - 1} more shard(s))` : ''}`,
    );
  }
  const total = totalRecords(input.shards);
  if (total === null)
    return pass(
      'records',
      'record counts unknown for some shards (bytes only); declared counts, where readable, match',
    );
  const tolerance = input.recordsTolerance ?? DEFAULT_RECORDS_TOLERANCE;
  const previous = input.previousPassed;
  if (!previous || previous.records === null || previous.records === 0)
    return pass('records', `${total} records; no earlier passed version to compare with`);
  const change = (total - previous.records) / previous.records;
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  if (Math.abs(change) > tolerance)
    return fail(
      'records',
      GATE_CODES.outOfTolerance,
      `${total} records, ${change >= 0 ? '+' : ''}${pct(change)} against version ${previous.version}'s ${previous.records} (tolerance ±${pct(tolerance)})`,
    );
  return pass(
    'records',
    `${total} records, ${change >= 0 ? '+' : ''}${pct(change)} against version ${previous.version} (within ±${pct(tolerance)})`,
  );
}

const GATE_FUNCTIONS: Record<Gate, (input: GateInput) => GateOutcome> = {
  integrity: integrityGate,
  completeness: completenessGate,
  schema: schemaGate,
  records: recordsGate,
};

export function runGate(gate: Gate, input: GateInput): GateOutcome {
  return GATE_FUNCTIONS[gate](input);
}

/** Every gate, in order; a version passes when all do. */
export function runGates(input: GateInput): GateOutcome[] {
  return GATES.map((gate) => runGate(gate, input));
}

/** A gate's record over earlier versions (oldest first or any order). */
export function gateHistory(earlier: { passed: boolean }[]): GateHistory {
  const passed = earlier.filter((result) => result.passed).length;
  return { versions: earlier.length, passed, passRate: earlier.length ? passed / earlier.length : null };
}

/** "3 of 4 earlier versions passed (75%)" or "first version checked by this gate". */
export function historyText(history: GateHistory): string {
  if (history.versions === 0) return 'first version checked by this gate';
  return `${history.passed} of ${history.versions} earlier versions passed (${((history.passRate ?? 0) * 100).toFixed(0)}%)`;
}

function describe(schema: Schema): string {
  return `{${Object.entries(schema)
    .map(([field, type]) => `${field}: ${type}`)
    .join(', ')}}`;
}
