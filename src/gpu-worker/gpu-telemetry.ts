import { execa } from 'execa';
import type { Slot } from '../domain/fleet.js';
import {
  finishRunTelemetry,
  foldReading,
  gpuFailureIn,
  parseTelemetryQuery,
  startRunTelemetry,
  TELEMETRY_QUERY_FIELDS,
  DEFAULT_TELEMETRY_SECONDS,
  type GpuFailure,
  type GpuTelemetry,
  type RunTelemetryState,
  type TelemetryReading,
} from '../domain/telemetry.js';

/** One telemetry query's answer: a reading, no nvidia-smi on the host, or a query that failed. */
export type TelemetryAnswer = { reading: TelemetryReading } | { missing: string } | { error: string };
export type TelemetryQuery = () => Promise<TelemetryAnswer>;

/** How long one nvidia-smi call may take (a hung driver must not hold the sampler). */
const QUERY_TIMEOUT_MS = 15_000;

/** The throttle field's name in drivers that renamed it (the bitmask is the same). */
const THROTTLE_FIELD = 'clocks_throttle_reasons.active';
const RENAMED_THROTTLE_FIELD = 'clocks_event_reasons.active';

/**
 * Asks nvidia-smi for every GPU of the host at once. A failed call that still says a GPU is lost
 * (nvidia-smi exits 15 then, listing the others) is a reading; any other failure is an error. A
 * driver that no longer knows the throttle field by its old name is asked by its new one from then on.
 */
export function nvidiaSmiQuery(env: NodeJS.ProcessEnv = { ...process.env }): TelemetryQuery {
  let fields: string[] = [...TELEMETRY_QUERY_FIELDS];
  const call = () =>
    execa('nvidia-smi', [`--query-gpu=${fields.join(',')}`, '--format=csv,noheader,nounits'], {
      timeout: QUERY_TIMEOUT_MS,
      reject: false,
      env,
      extendEnv: false,
    });
  return async () => {
    let result = await call();
    if (result.failed && fields.includes(THROTTLE_FIELD) && unknownField(result, THROTTLE_FIELD)) {
      fields = fields.map((field) => (field === THROTTLE_FIELD ? RENAMED_THROTTLE_FIELD : field));
      result = await call();
    }
    if ((result as { code?: string }).code === 'ENOENT') return { missing: "no nvidia-smi on this host's PATH" };
    const stdout = String(result.stdout ?? '');
    const stderr = String(result.stderr ?? '');
    if (!result.failed) {
      try {
        return { reading: parseTelemetryQuery(stdout) };
      } catch (error) {
        return { error: (error as Error).message };
      }
    }
    const partial = lostReading(`${stdout}\n${stderr}`);
    if (partial) return { reading: partial };
    const said = (stderr || stdout).trim().split('\n')[0] ?? '';
    return { error: `nvidia-smi failed (${result.exitCode ?? result.shortMessage}): ${said}`.trim() };
  };
}

/** nvidia-smi refused the query for not knowing `field`: `Field "X" is not a valid field to query.` */
function unknownField(result: { stdout?: unknown; stderr?: unknown }, field: string): boolean {
  const said = `${String(result.stdout ?? '')}\n${String(result.stderr ?? '')}`;
  return said.includes(`"${field}"`) && /not a valid field/i.test(said);
}

/** A failed call's output that lists GPUs and says one is lost; undefined for any other failure. */
function lostReading(output: string): TelemetryReading | undefined {
  try {
    const reading = parseTelemetryQuery(output);
    return reading.lostReports.length > 0 ? reading : undefined;
  } catch {
    return undefined;
  }
}

/** What a run gets from the sampler: its telemetry at its end. */
export interface TelemetryHandle {
  /** Stops following the run and returns what the record keeps. */
  finish(): GpuTelemetry;
}

interface Subscription {
  experimentId: string;
  state: RunTelemetryState;
  onFailure: (failure: GpuFailure) => void;
  failed: boolean;
  lastError: string | null;
}

export interface SamplerOptions {
  intervalSeconds?: number;
  /** The query (default: nvidia-smi with the environment the worker started with). */
  query?: TelemetryQuery;
  log?: (line: string) => void;
}

/**
 * The host's one GPU sampler, shared by every slot's activities of a worker process: while at least
 * one run is subscribed it asks nvidia-smi every interval, once for all GPUs, and hands each run the
 * rows of its own GPUs. Its memory is bounded: each run's state is constant but for a bounded series.
 */
export class GpuTelemetrySampler {
  readonly intervalSeconds: number;
  private readonly query: TelemetryQuery;
  private readonly log: (line: string) => void;
  private readonly runs = new Set<Subscription>();
  private timer: NodeJS.Timeout | null = null;
  private sampling = false;
  /** Set once nvidia-smi turned out missing: nothing is asked again. */
  private missing: string | null = null;

  constructor(options: SamplerOptions = {}) {
    this.intervalSeconds = options.intervalSeconds ?? DEFAULT_TELEMETRY_SECONDS;
    this.query = options.query ?? nvidiaSmiQuery();
    this.log = options.log ?? (() => {});
  }

  /** How many runs it follows now. */
  get subscribed(): number {
    return this.runs.size;
  }

  /** Whether a query is running or due: never once no run is subscribed and the last query ended. */
  get active(): boolean {
    return this.sampling || this.timer !== null;
  }

  /**
   * Follows a run's GPUs from now until `finish`. A CPU slot, or a host without nvidia-smi, has no
   * telemetry: the handle says why, and no number is made up.
   */
  subscribe(experimentId: string, gpus: Slot[], onFailure: (failure: GpuFailure) => void): TelemetryHandle {
    const cpu = gpus.find((slot) => slot.acceleratorClass === 'cpu');
    if (cpu) return unavailable(`${cpu.slotId} is a CPU slot: there is no GPU to sample`);
    if (this.missing) return unavailable(this.missing);
    const run: Subscription = {
      experimentId,
      state: startRunTelemetry(
        gpus.map((slot) => ({ slotId: slot.slotId, index: slot.index, uuid: slot.uuid })),
        this.intervalSeconds,
        Date.now(),
      ),
      onFailure,
      failed: false,
      lastError: null,
    };
    this.runs.add(run);
    if (!this.sampling && !this.timer) this.schedule(0);
    return {
      finish: () => {
        this.runs.delete(run);
        if (this.runs.size === 0 && this.timer) {
          clearTimeout(this.timer);
          this.timer = null;
        }
        const why =
          this.missing ?? (run.lastError ? `every telemetry query failed; the last: ${run.lastError}` : undefined);
        return finishRunTelemetry(run.state, Date.now(), why);
      },
    };
  }

  /** Stops sampling (the worker shuts down); the runs' handles still finish with what they have. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.runs.clear();
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick();
    }, delayMs);
    this.timer.unref?.();
  }

  /** One query for every GPU, handed to every run; the next one an interval after this one ends. */
  private async tick(): Promise<void> {
    if (this.runs.size === 0) return;
    this.sampling = true;
    try {
      const answer = await this.query().catch((error: Error) => ({ error: error.message }));
      this.hand(answer, new Date());
    } finally {
      this.sampling = false;
      if (this.runs.size > 0 && !this.missing && !this.timer) this.schedule(this.intervalSeconds * 1000);
    }
  }

  private hand(answer: TelemetryAnswer, at: Date): void {
    if ('missing' in answer) {
      this.missing = answer.missing;
      this.log(`expctl worker: GPU telemetry unavailable: ${answer.missing}`);
      return;
    }
    for (const run of [...this.runs]) {
      if ('error' in answer) {
        run.state.failedQueries++;
        run.lastError = answer.error;
        continue;
      }
      const failure = run.failed ? null : gpuFailureIn(run.state, answer.reading, at);
      foldReading(run.state, answer.reading, at.getTime());
      if (!failure) continue;
      run.failed = true;
      try {
        run.onFailure(failure);
      } catch (error) {
        this.log(`expctl worker: stopping ${run.experimentId} for its failed GPU failed: ${(error as Error).message}`);
      }
    }
  }
}

function unavailable(reason: string): TelemetryHandle {
  return { finish: () => ({ available: false, reason }) };
}
