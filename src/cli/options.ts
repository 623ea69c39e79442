import { InvalidArgumentError, Option } from 'commander';
import { checkMetricName, checkTag, FlagError, numberOption, singleOption } from './parse.js';

/**
 * What every command's declaration (declarations/) shares: option parsers, the --json option, and
 * the lazy action, so a command's module is loaded only when that command runs.
 */

export const positiveInt = (flag: string) => numberOption(flag, { integer: true, min: 1 });
export function indexList(raw: string, previous: unknown): number[] {
  if (previous !== undefined)
    throw new InvalidArgumentError('--gpus was given more than once; list every GPU in one value, e.g. 0,2');
  const parts = raw.split(',');
  if (parts.some((part) => !/^\d+$/.test(part))) throw new InvalidArgumentError('expected GPU indexes such as 0,2');
  return parts.map(Number);
}
export const collect = (value: string, previous: string[]) => [...previous, value];
/** A text flag that takes one value. */
export const one = singleOption;
/** Turns a FlagError of a check into commander's usage error. */
export function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof FlagError) throw new InvalidArgumentError(error.message);
    throw error;
  }
}
export const tagArgument = (raw: string) => usage(() => checkTag('<tag>', raw));
export function metricOption(flag: string) {
  const single = singleOption(flag);
  return (raw: string, previous: unknown): string => usage(() => checkMetricName(flag, single(raw, previous)));
}
export const jsonOption = () => new Option('--json', 'print JSON (the default when stdout is not a terminal)');

type Action = (...args: never[]) => unknown;
/** The export `name` of the module `load` imports, called only when the command runs. */
export function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K) {
  type F = M[K] extends Action ? M[K] : never;
  return async (...args: Parameters<F>): Promise<Awaited<ReturnType<F>>> =>
    ((await load())[name] as F)(...args) as Awaited<ReturnType<F>>;
}
