import { ensureTemporalCli } from '../../temporal/temporal-cli.js';

export async function installTemporalCommand(): Promise<void> {
  const binary = await ensureTemporalCli();
  console.log(binary);
}
