import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { expctlProgram } from '../../src/cli/program.js';
import {
  BatchInput,
  batchArgs,
  HistoryInput,
  historyArgs,
  idArgs,
  logsArgs,
  RunInput,
  runArgs,
  SuggestInput,
  tagArgs,
} from '../../src/mcp/tools.js';

const program = expctlProgram('0.0.0');
const CWD = path.resolve('/srv/work');
const SHA = 'a'.repeat(40);

/** The command an argv names, or undefined. */
function commandOf(name: string): Command | undefined {
  return program.commands.find((command) => command.name() === name);
}

/** What in an argv the CLI's own declaration of its command does not accept: unknown commands, flags, missing required options, extra arguments. */
function undeclared(args: string[]): string[] {
  const [name, ...rest] = args;
  const command = commandOf(name!);
  if (!command) return [`no command ${name}`];
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  const flags = own.filter((arg) => arg.startsWith('--')).map((arg) => arg.split('=')[0]!);
  const positionals = own.filter((arg) => !arg.startsWith('--'));
  const declared = new Set(command.options.map((option) => option.long));
  const problems = flags.filter((flag) => !declared.has(flag)).map((flag) => `${name} has no ${flag}`);
  for (const option of command.options)
    if (option.mandatory && !flags.includes(option.long!)) problems.push(`${name} needs ${option.long}`);
  const declaredArguments = command.registeredArguments;
  const variadic = declaredArguments.some((argument) => argument.variadic);
  if (!variadic && positionals.length > declaredArguments.length)
    problems.push(`${name} takes ${declaredArguments.length} arguments, not ${positionals.length}`);
  return problems;
}

/** Every field of the run request an agent can give, each set. */
const everyRequestField = {
  tag: 'speed',
  hypothesis: 'wider MLP',
  category: 'architecture',
  description: 'a longer note',
  command: ['python3', 'train.py'],
  repo: 'https://example.com/repo.git',
  config: 'config.json',
  datasets: ['corpus@latest'],
  wait_for_data: 60,
  checkpoint: 'ckpt.pt',
  gpu_class: 'h100',
  gpu_mem: 40000,
  runtime_tags: ['cuda12'],
  time_budget: 300,
  timeout: 600,
  setup: 'uv sync --frozen',
  setup_timeout: 120,
  metric: 'val_bpb',
  maximize: true,
  simplification: true,
  idempotency_key: 'k1',
  priority: 5,
  max_replacements: 2,
  env: { LR: '3e-4' },
  detach: true,
};

describe('the MCP tools against the CLI declarations', () => {
  it('every tool, with every field it takes, becomes an argv its command declares', () => {
    const invocations = [
      runArgs(RunInput.parse({ ...everyRequestField, commit: SHA }), CWD),
      runArgs(RunInput.parse({ ...everyRequestField, wait_for_data: true }), CWD),
      batchArgs(BatchInput.parse({ ...everyRequestField, commits: [SHA], base: 'HEAD', deadline: 900 }), CWD),
      idArgs('wait', { id: 'exp-speed-1' }, CWD),
      idArgs('show', { id: 'exp-speed-1' }, CWD),
      idArgs('cancel', { id: 'exp-speed-1' }, CWD),
      historyArgs(HistoryInput.parse({ tag: 'speed', status: 'kept', category: 'architecture', limit: 5 }), CWD),
      tagArgs('best', { tag: 'speed' }, CWD),
      tagArgs('suggest', SuggestInput.parse({ tag: 'speed', k: 3, all_categories: true }), CWD),
      logsArgs({ id: 'exp-speed-1' }, CWD),
    ];
    for (const { args } of invocations) expect(undeclared(args), args.join(' ')).toEqual([]);
    // Each request field reached the argv as a flag of its own (none was dropped on the way).
    const runFlags = invocations[0]!.args.filter((arg) => arg.startsWith('--') && arg !== '--').length;
    expect(runFlags).toBeGreaterThanOrEqual(Object.keys(everyRequestField).length - 1);
  });

  it('finds what a declaration does not accept', () => {
    expect(undeclared(['run', '--tagg=x', '--json'])).toEqual(['run has no --tagg']);
    expect(undeclared(['best', '--json'])).toEqual(['best needs --tag']);
    expect(undeclared(['wait', '--json', 'a', 'b'])).toEqual(['wait takes 1 arguments, not 2']);
    expect(undeclared(['nosuch'])).toEqual(['no command nosuch']);
  });
});

describe('the CLI declarations', () => {
  it('name each command once', () => {
    const names = program.commands.map((command) => command.name());
    expect(names.length).toBeGreaterThan(30);
    expect(new Set(names).size).toBe(names.length);
  });

  it('give retry and rerun the same arguments and options, from one declaration (retry adds --resume)', () => {
    const shape = (name: string) => {
      const command = commandOf(name)!;
      return {
        arguments: command.registeredArguments.map((argument) => argument.name()),
        options: command.options.map((option) => option.flags),
      };
    };
    expect(shape('retry').arguments).toEqual(shape('rerun').arguments);
    expect(shape('rerun').options).toEqual(['--detach', '--secret <NAME[=@FILE]>', '--json']);
    // A rerun reproduces from step 0; only a retry may resume from the old run's checkpoint.
    expect(shape('retry').options).toEqual([...shape('rerun').options, '--resume']);
    expect(commandOf('retry')!.description()).not.toBe(commandOf('rerun')!.description());
  });
});
