/**
 * `npm run drills [-- --quick] [--rows a,b] [--json] [--outage-seconds N]`: fault drills on a real stack.
 * Starts a Temporal dev server (or uses TEMPORAL_ADDRESS, skipping rows that stop the server),
 * the orchestrator and GPU workers as separate processes, breaks them on purpose, and prints per
 * row how many runs were submitted, lost, duplicated and orphaned, and the states they reached.
 * Exits 1 when any of those counts (or a wrong terminal state) is not 0.
 */
import { failed, formatReport, ROW_NAMES, runDrills } from './drills/run.js';

function parseArgs(argv: string[]) {
  const options = {
    quick: false,
    json: false,
    rows: undefined as string[] | undefined,
    outageSeconds: undefined as number | undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') options.quick = true;
    else if (arg === '--json') options.json = true;
    else if (arg === '--rows') options.rows = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (arg === '--outage-seconds') options.outageSeconds = Number(argv[++i]);
    else if (arg === '--help' || arg === '-h') {
      console.log(`usage: npm run drills -- [--quick] [--rows ${ROW_NAMES.join(',')}] [--json] [--outage-seconds N]`);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (see --help)`);
  }
  if (options.outageSeconds !== undefined && !(options.outageSeconds > 0))
    throw new Error('--outage-seconds takes a positive number');
  return options;
}

const options = parseArgs(process.argv.slice(2));
const report = await runDrills({
  quick: options.quick,
  rows: options.rows,
  outageSeconds: options.outageSeconds,
  externalAddress: process.env.TEMPORAL_ADDRESS || undefined,
  namespace: process.env.TEMPORAL_NAMESPACE || 'default',
});
console.log(options.json ? JSON.stringify(report, null, 2) : formatReport(report));
process.exit(report.rows.some(failed) ? 1 : 0);
