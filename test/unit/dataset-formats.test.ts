import { formatDuration, parseDuration } from '../../src/domain/duration.js';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  formatOf,
  inspectContent,
  inspectDelimited,
  inspectJsonl,
  inspectParquetFooter,
  parquetFooterLength,
  parseDelimited,
  ShardFormatError,
} from '../../src/domain/dataset-formats.js';
import {
  datasetVersionWorkflowId,
  isIgnoredFileName,
  parseDatasetVersionWorkflowId,
  parseShardFileName,
  shardObjectPath,
} from '../../src/domain/datasets.js';
import { manifestDigest } from '../../src/catalog/datasets.js';

describe('formats', () => {
  it('by extension', () => {
    expect(formatOf('a-0-of-2.jsonl')).toBe('jsonl');
    expect(formatOf('x.NDJSON')).toBe('jsonl');
    expect(formatOf('x.csv')).toBe('csv');
    expect(formatOf('x.tsv')).toBe('tsv');
    expect(formatOf('x.parquet')).toBe('parquet');
    expect(formatOf('x.bin')).toBe('bytes');
    expect(formatOf('x')).toBe('bytes');
  });

  it('JSONL: records are non-empty lines; schema maps each field to its JSON type(s)', () => {
    const text =
      '{"id":1,"text":"a","tags":["x"]}\n\n{"id":2,"text":null,"meta":{"k":1}}\n{"id":"3","text":"c","ok":true}\n';
    expect(inspectJsonl(text)).toEqual({
      records: 3,
      schema: { id: 'number|string', meta: 'object', ok: 'boolean', tags: 'array', text: 'string' },
    });
    expect(inspectJsonl('{"a":null}\n').schema).toEqual({ a: 'null' });
    expect(() => inspectJsonl('{"a":1}\nnot json\n')).toThrow(ShardFormatError);
    expect(() => inspectJsonl('[1,2]\n')).toThrow(/line 1 is not a JSON object/);
  });

  it('CSV/TSV: the header is the schema, rows are records; quoted fields may hold commas, quotes and newlines', () => {
    expect(parseDelimited('a,b\n"x, y","he said ""hi"""\n"multi\nline",2\n', ',')).toEqual([
      ['a', 'b'],
      ['x, y', 'he said "hi"'],
      ['multi\nline', '2'],
    ]);
    expect(inspectDelimited('id,text\r\n1,a\r\n2,b\r\n', ',')).toEqual({
      records: 2,
      schema: { id: 'string', text: 'string' },
    });
    expect(inspectDelimited('id\ttext\n1\ta\n', '\t').records).toBe(1);
    expect(inspectDelimited('id,text\n', ',').records).toBe(0);
    expect(() => inspectDelimited('id,text\n1,a,extra\n', ',')).toThrow(/row 2 has 3 fields, the header 2/);
    expect(() => inspectDelimited('a,a\n', ',')).toThrow(/appears twice/);
    expect(() => parseDelimited('"open\n', ',')).toThrow(/not closed/);
  });

  it('Parquet: rows and top-level columns from the footer alone (fixture made as make-parquet.mjs says)', () => {
    const file = fs.readFileSync(new URL('../fixtures/datasets/tiny-0-of-1.parquet', import.meta.url));
    const expected = { records: 5, schema: { text: 'string', id: 'int32' } };
    expect(inspectParquetFooter(file)).toEqual(expected);
    const footer = parquetFooterLength(file.subarray(file.length - 8));
    expect(footer).toBeLessThan(file.length);
    expect(inspectParquetFooter(file.subarray(file.length - footer))).toEqual(expected);
    expect(inspectContent('parquet', file)).toEqual(expected);
    expect(() => parquetFooterLength(Buffer.from('12345678'))).toThrow(ShardFormatError);
    expect(() =>
      inspectParquetFooter(Buffer.concat([Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0]), Buffer.from('PAR1')])),
    ).toThrow(ShardFormatError);
  });

  it('other formats are bytes only', () => {
    expect(inspectContent('bytes', Buffer.from('PAR1...'))).toBeNull();
    expect(inspectContent('csv', Buffer.from('a\n1\n'))).toEqual({ records: 1, schema: { a: 'string' } });
  });
});

describe('dataset names and paths', () => {
  it('shard file names NAME-SHARD-of-COUNT.EXT', () => {
    expect(parseShardFileName('train-00003-of-00008.jsonl')).toEqual({
      dataset: 'train',
      shardIndex: 3,
      shardCount: 8,
    });
    expect(parseShardFileName('web-text-0-of-1.csv')).toEqual({ dataset: 'web-text', shardIndex: 0, shardCount: 1 });
    expect(parseShardFileName('train-8-of-8.jsonl')).toBeNull();
    expect(parseShardFileName('train.jsonl')).toBeNull();
  });

  it('partial files and sidecars are ignored', () => {
    for (const name of ['a-0-of-1.jsonl.tmp', 'a-0-of-1.jsonl.part', '.a-0-of-1.jsonl', 'a-0-of-1.jsonl.sha256', 'x~'])
      expect(isIgnoredFileName(name)).toBe(true);
    expect(isIgnoredFileName('a-0-of-1.jsonl')).toBe(false);
  });

  it('ids, refs, durations, store paths and the manifest digest', () => {
    expect(datasetVersionWorkflowId('train', 3)).toBe('expctl-dataset-train-v3');
    expect(parseDatasetVersionWorkflowId('expctl-dataset-my-v2-v3')).toEqual({ dataset: 'my-v2', version: 3 });
    expect(parseDatasetVersionWorkflowId('expctl-tag-x')).toBeNull();
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(() => parseDuration('30')).toThrow(/expected a duration/);
    expect(formatDuration(1_800_000)).toBe('30m');
    expect(formatDuration(1500)).toBe('1500ms');
    const hex = 'ab'.repeat(32);
    expect(shardObjectPath('/data/', hex)).toBe(`/data/objects/${hex}`);
    expect(() => shardObjectPath('/data', '../etc/passwd')).toThrow(/not a sha256/);
    const a = { index: 0, sha256: 'a'.repeat(64) };
    const b = { index: 1, sha256: 'b'.repeat(64) };
    expect(manifestDigest([b, a])).toBe(manifestDigest([a, b]));
    expect(manifestDigest([a, b])).toMatch(/^[0-9a-f]{64}$/);
  });
});
