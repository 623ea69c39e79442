import { execa } from 'execa';
import { GPU_QUERY_FIELDS } from '../domain/fleet.js';
import { readHealthQuery, type HealthQueryReading } from '../domain/health.js';

/** How long the health check's nvidia-smi call may take (a hung driver must not hold the check). */
const QUERY_TIMEOUT_MS = 20_000;

/**
 * Asks nvidia-smi for every GPU of the host, for the health check. A call that fails but still
 * lists GPUs (nvidia-smi exits non-zero when one is lost) is a reading, so one lost GPU drains only
 * itself; a call that lists none is thrown, and the check fails for the whole host. Undefined when
 * the host has no nvidia-smi.
 */
export async function queryHealth(): Promise<HealthQueryReading | undefined> {
  const result = await execa(
    'nvidia-smi',
    [`--query-gpu=${GPU_QUERY_FIELDS.join(',')}`, '--format=csv,noheader,nounits'],
    { timeout: QUERY_TIMEOUT_MS, reject: false },
  );
  if ((result as { code?: string }).code === 'ENOENT') return undefined;
  const stdout = String(result.stdout ?? '');
  const stderr = String(result.stderr ?? '');
  if (!result.failed) return readHealthQuery(stdout);
  const said = (stderr || stdout).trim().split('\n')[0] ?? '';
  const failure = new Error(`nvidia-smi failed (${result.exitCode ?? result.shortMessage}): ${said}`.trim());
  let reading: HealthQueryReading;
  try {
    reading = readHealthQuery(`${stdout}\n${stderr}`);
  } catch {
    throw failure;
  }
  if (reading.rows.length === 0 && reading.lostGpus.length === 0) throw failure;
  return reading;
}
