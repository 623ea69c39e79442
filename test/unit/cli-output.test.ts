import { describe, expect, it } from 'vitest';
import { formatTable, safeJson, safeText } from '../../src/cli/output.js';

const ESC = '\u001b';
const RLO = '\u202e';

describe('safeText', () => {
  it('escapes ANSI sequences, C0/C1 controls and DEL', () => {
    expect(safeText(`${ESC}[31mred${ESC}[0m`)).toBe('\\x1b[31mred\\x1b[0m');
    expect(safeText('a\u0007b\u0000c\u007fd\u009be\u0085f')).toBe('a\\x07b\\x00c\\x7fd\\x9be\\x85f');
    expect(safeText('cursor\rback\bspace')).toBe('cursor\\rback\\x08space');
  });

  it('escapes bidi overrides, isolates and marks', () => {
    for (const char of [
      '\u202a',
      '\u202b',
      '\u202c',
      '\u202d',
      '\u202e',
      '\u2066',
      '\u2067',
      '\u2068',
      '\u2069',
      '\u200e',
      '\u200f',
      '\u061c',
    ]) {
      expect(safeText(`x${char}y`)).toBe(`x\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}y`);
    }
    expect(safeText(`invoice${RLO}fdp.exe`)).toBe('invoice\\u202efdp.exe');
  });

  it('escapes newlines and tabs in single-line fields, keeps them in multi-line ones', () => {
    expect(safeText('a\nb\tc')).toBe('a\\nb\\tc');
    expect(safeText(`a\nb\tc${ESC}[2J\r`, { multiline: true })).toBe('a\nb\tc\\x1b[2J\\r');
    expect(safeText('a\u2028b')).toBe('a\\u2028b');
  });

  it('leaves ordinary text, unicode and emoji alone', () => {
    const text = 'Größe ↑ 3.2% — 学习率 🚀 "quoted" \\ back';
    expect(safeText(text)).toBe(text);
    expect(safeText(42)).toBe('42');
  });
});

describe('safeJson', () => {
  it('is the same value, with C1, DEL and bidi characters written as \\uXXXX', () => {
    const value = { d: `x${RLO}y\u0085z\u007f${ESC}[1m\n`, n: [1, null, 'é'] };
    const text = safeJson(value);
    expect(JSON.parse(text)).toEqual(value);
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u200e\u200f]/);
    expect(text).toContain('\\u202e');
    expect(text).toContain('\\u0085');
    expect(text).toContain('\\u007f');
    expect(text).toContain('\\u001b');
    expect(text).toContain('é');
  });
});

describe('formatTable', () => {
  it('escapes every cell and aligns the escaped text', () => {
    const table = formatTable(
      ['id', 'hypothesis'],
      [
        ['e1', `evil${ESC}[2Jclear`],
        ['e2', `two\nlines${RLO}`],
        ['e3', null],
      ],
    );
    expect(table).not.toContain(ESC);
    expect(table).not.toContain(RLO);
    expect(table.split('\n')).toEqual(['id  hypothesis', 'e1  evil\\x1b[2Jclear', 'e2  two\\nlines\\u202e', 'e3  -']);
  });
});
