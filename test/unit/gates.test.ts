import { describe, expect, it } from 'vitest';
import {
  GATES,
  gateHistory,
  historyText,
  runGates,
  schemaGate,
  recordsGate,
  integrityGate,
  completenessGate,
  totalRecords,
  type GateInput,
  type GateShard,
} from '../../src/domain/gates.js';

const sha = (c: string) => c.repeat(64);
const shard = (index: number, over: Partial<GateShard> = {}): GateShard => ({
  index,
  sha256: sha(String(index % 10)),
  declaredSha256: sha(String(index % 10)),
  records: 10,
  declaredRecords: null,
  schema: { id: 'number', text: 'string' },
  format: 'jsonl',
  ...over,
});
const input = (over: Partial<GateInput> = {}): GateInput => ({
  expectedShards: 2,
  shards: [shard(0), shard(1)],
  previousPassed: null,
  ...over,
});

describe('gates', () => {
  it('a clean first version passes every gate, in order', () => {
    const outcomes = runGates(input());
    expect(outcomes.map((o) => o.gate)).toEqual([...GATES]);
    expect(outcomes.every((o) => o.passed && o.code === null)).toBe(true);
  });

  it('integrity: a hash other than the declared one fails with integrity.hash_mismatch naming the shard', () => {
    const outcome = integrityGate(input({ shards: [shard(0), shard(1, { declaredSha256: sha('f') })] }));
    expect(outcome).toMatchObject({ passed: false, code: 'integrity.hash_mismatch' });
    expect(outcome.message).toMatch(/shards 1\b/);
  });

  it('completeness: missing shards are listed', () => {
    const outcome = completenessGate(input({ expectedShards: 4 }));
    expect(outcome).toMatchObject({ passed: false, code: 'completeness.missing_shards' });
    expect(outcome.message).toMatch(/2 of 4 shards missing at the seal \(shards 2, 3\)/);
  });

  it('schema: shards disagreeing is schema.inconsistent_shards', () => {
    const outcome = schemaGate(input({ shards: [shard(0), shard(1, { schema: { id: 'string', text: 'string' } })] }));
    expect(outcome).toMatchObject({ passed: false, code: 'schema.inconsistent_shards' });
  });

  it('schema: against the previous passed version, a removed column and a changed type fail; an added one passes', () => {
    const previousPassed = { version: 3, records: 20, schema: { id: 'number', text: 'string', lang: 'string' } };
    expect(schemaGate(input({ previousPassed }))).toMatchObject({ passed: false, code: 'schema.column_removed' });
    const changed = { version: 3, records: 20, schema: { id: 'string', text: 'string' } };
    const outcome = schemaGate(input({ previousPassed: changed }));
    expect(outcome).toMatchObject({ passed: false, code: 'schema.type_changed' });
    expect(outcome.message).toMatch(/column id was string in version 3, is number now/);
    const narrower = { version: 3, records: 20, schema: { id: 'number' } };
    expect(schemaGate(input({ previousPassed: narrower }))).toMatchObject({
      passed: true,
      message: expect.stringMatching(/new columns text/),
    });
  });

  it('schema: a JSONL shard that could not be read fails with schema.unreadable; bytes-only shards are not compared', () => {
    expect(schemaGate(input({ shards: [shard(0), shard(1, { schema: null, records: null })] }))).toMatchObject({
      passed: false,
      code: 'schema.unreadable',
    });
    const bytes = [shard(0, { schema: null, records: null, format: 'bytes' })];
    expect(schemaGate(input({ expectedShards: 1, shards: bytes }))).toMatchObject({ passed: true });
    expect(recordsGate(input({ expectedShards: 1, shards: bytes }))).toMatchObject({ passed: true });
  });

  it('records: a declared count that differs is records.declared_mismatch', () => {
    const outcome = recordsGate(
      input({ shards: [shard(0, { declaredRecords: 11 }), shard(1, { declaredRecords: 10 })] }),
    );
    expect(outcome).toMatchObject({ passed: false, code: 'records.declared_mismatch' });
    expect(outcome.message).toMatch(/shard 0 has 10 records, 11 declared/);
  });

  it('records: within ±50% of the previous passed version passes; beyond it is records.out_of_tolerance', () => {
    const at = (records: number) => ({ version: 1, records, schema: null });
    expect(recordsGate(input({ previousPassed: at(40) }))).toMatchObject({ passed: true }); // 20 vs 40: -50%
    expect(recordsGate(input({ previousPassed: at(41) }))).toMatchObject({
      passed: false,
      code: 'records.out_of_tolerance',
    });
    expect(recordsGate(input({ previousPassed: at(14) }))).toMatchObject({ passed: true }); // +43%
    expect(recordsGate(input({ previousPassed: at(13) }))).toMatchObject({ passed: false }); // +54%
  });

  it('totals, history and its wording', () => {
    expect(totalRecords([shard(0), shard(1)])).toBe(20);
    expect(totalRecords([shard(0), shard(1, { records: null })])).toBeNull();
    expect(gateHistory([])).toEqual({ versions: 0, passed: 0, passRate: null });
    expect(gateHistory([{ passed: true }, { passed: false }, { passed: true }, { passed: true }])).toEqual({
      versions: 4,
      passed: 3,
      passRate: 0.75,
    });
    expect(historyText(gateHistory([{ passed: true }, { passed: false }]))).toBe(
      '1 of 2 earlier versions passed (50%)',
    );
    expect(historyText(gateHistory([]))).toBe('first version checked by this gate');
  });
});
