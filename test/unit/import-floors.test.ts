import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The floors of src/ (docs/architecture.md, "Folder layout"): a module imports only from its own
 * floor and the floors below. Type-only imports are erased when compiled, so they are no
 * dependency at run time; the one kind allowed upward is a workflow naming its activities' types
 * (`proxyActivities<typeof ...>`), Temporal's own pattern.
 */
const FLOORS: string[][] = [
  ['domain'],
  ['shared'],
  ['security'],
  ['catalog', 'temporal', 'store'],
  ['workflows'],
  ['gpu-worker'],
  ['activities'],
  ['client', 'fleet-remote'],
  ['roots', 'dev-stack'],
  ['cli', 'mcp'],
];

/** Imports that climb a floor on purpose, each named with its reason in docs/architecture.md (at most 2). */
const ALLOWED_UPWARD: { from: string; to: string }[] = [];

const SRC = fileURLToPath(new URL('../../src', import.meta.url));
const ARCHITECTURE = fileURLToPath(new URL('../../docs/architecture.md', import.meta.url));

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
}

/** The floor of a file of src/: the most specific entry that names it (a file, then its folder). */
function floorOf(file: string): number {
  const matches = FLOORS.flatMap((names, floor) =>
    names.filter((name) => file === name || file.startsWith(`${name}/`)).map((name) => ({ floor, name })),
  );
  if (matches.length === 0) throw new Error(`${file} is on no floor: give its folder one in FLOORS`);
  return matches.sort((a, b) => b.name.length - a.name.length)[0]!.floor;
}

function sourceFiles(): string[] {
  return fs
    .readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((name) => /\.(ts|mts|mjs)$/.test(name))
    .map((name) => name.split(path.sep).join('/'))
    .sort();
}

/** The module a relative specifier names, as a path under src/ (`./x.js` is written for `x.ts`). */
function resolve(from: string, specifier: string): string {
  const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  const candidates = [target, target.replace(/\.js$/, '.ts'), target.replace(/\.mjs$/, '.mts')];
  const found = candidates.find((candidate) => fs.existsSync(path.join(SRC, candidate)));
  if (!found) throw new Error(`${from} imports ${specifier}, which is no file of src/`);
  return found;
}

/** Every relative import of a file: import and export declarations, and dynamic `import()`. */
function importsOf(file: string, text: string): Edge[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false);
  const edges: Edge[] = [];
  const add = (specifier: string, typeOnly: boolean) => {
    if (specifier.startsWith('.')) edges.push({ from: file, to: resolve(file, specifier), typeOnly });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.importClause?.isTypeOnly === true);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      add(node.arguments[0].text, false);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

function importGraph(): Edge[] {
  return sourceFiles().flatMap((file) => importsOf(file, fs.readFileSync(path.join(SRC, file), 'utf8')));
}

const upward = (edges: Edge[]) => edges.filter((edge) => floorOf(edge.to) > floorOf(edge.from));

/** The import circles: strongly connected groups of more than one file, or a file importing itself (Tarjan). */
function circles(edges: Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) next.set(from, [...(next.get(from) ?? []), to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const connect = (file: string): void => {
    index.set(file, index.size);
    low.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const to of next.get(file) ?? []) {
      if (!index.has(to)) {
        connect(to);
        low.set(file, Math.min(low.get(file)!, low.get(to)!));
      } else if (onStack.has(to)) low.set(file, Math.min(low.get(file)!, index.get(to)!));
    }
    if (low.get(file) !== index.get(file)) return;
    const group: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      group.push(member);
    } while (member !== file);
    if (group.length > 1 || (next.get(file) ?? []).includes(file)) found.push(group.sort());
  };
  for (const file of next.keys()) if (!index.has(file)) connect(file);
  return found;
}

describe('the import graph of src/', () => {
  const edges = importGraph();

  it('is read from every kind of import statement', () => {
    expect(edges.length).toBeGreaterThan(500);
    const has = (from: string, to: string, typeOnly: boolean) =>
      edges.some((edge) => edge.from === from && edge.to === to && edge.typeOnly === typeOnly);
    expect(has('cli/commands/experiments.ts', 'client/experiments.ts', false)).toBe(true);
    expect(has('workflows/experiment/activities.ts', 'activities/control.ts', true)).toBe(true);
    // Commands are loaded when they run (each declaration's action), through import().
    expect(edges.some((edge) => edge.from === 'cli/declarations/mcp.ts' && edge.to === 'mcp/server.ts')).toBe(true);
    expect(has('cli/output.ts', 'shared/safe-text.ts', false)).toBe(true);
  });

  it('has no import circle', () => {
    expect(circles(edges)).toEqual([]);
  });

  it('climbs no floor but through the imports the architecture guide names, at most 2', () => {
    const climbing = upward(edges.filter((edge) => !edge.typeOnly)).map(({ from, to }) => ({ from, to }));
    expect(climbing).toEqual(ALLOWED_UPWARD);
    expect(ALLOWED_UPWARD.length).toBeLessThanOrEqual(2);
    const guide = fs.readFileSync(ARCHITECTURE, 'utf8');
    for (const { from, to } of ALLOWED_UPWARD) expect(guide).toContain(`\`src/${from}\` → \`src/${to}\``);
  });

  it('climbs with types only from a workflow to its activities', () => {
    const typeClimbs = upward(edges.filter((edge) => edge.typeOnly));
    expect(typeClimbs.length).toBeGreaterThan(0);
    const other = typeClimbs.filter(
      (edge) => !(edge.from.startsWith('workflows/') && edge.to.startsWith('activities/')),
    );
    expect(other).toEqual([]);
  });

  it('gives every file of src/ a floor, and the checks find a climb and a circle where there is one', () => {
    for (const file of sourceFiles()) expect(() => floorOf(file)).not.toThrow();
    const made = [
      { from: 'security/keyring.ts', to: 'cli/parse.ts', typeOnly: false },
      { from: 'cli/parse.ts', to: 'security/keyring.ts', typeOnly: false },
    ];
    expect(upward(made)).toEqual([made[0]]);
    expect(circles(made)).toEqual([['cli/parse.ts', 'security/keyring.ts']]);
    expect(floorOf('roots/gpu-worker.ts')).toBeGreaterThan(floorOf('activities/training.ts'));
    expect(floorOf('gpu-worker/git.ts')).toBeLessThan(floorOf('activities/training.ts'));
  });
});
