import { Command, InvalidArgumentError } from 'commander';
import { devCommand } from './commands/dev.js';
import { installTemporalCommand } from './commands/install-temporal.js';
import { CliError } from './output.js';

function positiveInt(raw: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError('expected a positive integer');
  return value;
}

const program = new Command()
  .name('expctl')
  .description('Durable experiment orchestration for ML research on GPU fleets, on Temporal')
  .showHelpAfterError();

program
  .command('dev')
  .description('start the local stack: Temporal dev server + Web UI, orchestrator, one GPU worker')
  .option('--no-demo', 'do not run the example campaign after start')
  .option('--cpu-slots <n>', 'CPU slots for the local worker when there is no GPU', positiveInt)
  .action((options: { demo: boolean; cpuSlots?: number }) => devCommand(options));

program
  .command('install-temporal')
  .description('make the pinned Temporal CLI available (build or download once, cached per user) and print its path')
  .action(() => installTemporalCommand());

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const exitCode = error instanceof CliError ? error.exitCode : 1;
  console.error(`expctl: ${(error as Error).message}`);
  process.exit(exitCode);
}
