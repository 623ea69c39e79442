import { z } from 'zod';
import { TERMINAL_STATUSES } from '../domain/experiment.js';

/**
 * What every `--json` output holds: one schema per output, in the one JSON style (snake_case at
 * every depth, figures rounded to 6 decimals: json-style.ts). `expctl schema NAME` prints each as
 * JSON Schema, the MCP tools declare them as their output schemas, and a test checks the CLI's
 * real outputs against them. Objects are open (`looseObject`): a field added later never breaks a
 * reader, but every field named here is checked.
 */

const id = z.string();
const nullableString = z.string().nullable();
const nullableNumber = z.number().nullable();
const timestamp = z.string().describe('ISO 8601');
const figure = z.number().nullable().describe('rounded to 6 decimals, as the metric is printed');
/** A map keyed by names the user or the fleet chose (metric names, hosts, environment variables). */
const byName = <T extends z.ZodType>(value: T) => z.record(z.string(), value);

/** `run`, `wait`, `cancel` (and each child of a batch): the run contract. */
export const ExperimentResultOutput = z.looseObject({
  experiment_id: nullableString.describe('null when the request was refused before it existed'),
  tag: z.string(),
  status: z.string().describe(TERMINAL_STATUSES.join(', ')),
  decision: z.enum(['keep', 'discard']).nullable(),
  action: z.enum(['keep_commit', 'git_reset']).nullable().describe('the git action to take'),
  metric_name: z.string(),
  metric: figure,
  best: figure.describe("the tag's best after this run (its comparability group)"),
  delta: figure.describe('metric minus the best it was compared with'),
  near_miss: z.boolean(),
  consecutive_crashes: z.number().int(),
  should_abort: z.boolean().describe('too many crashes in a row: rethink before the next run'),
  reason: z.string(),
  gpu: nullableString.describe('the slot it trained on (the lead GPU of a multi-GPU run)'),
  gpus: z
    .array(z.string())
    .optional()
    .describe("a multi-GPU run's every GPU, lead first, in topology order (absent for a 1-GPU run)"),
  worker: nullableString.describe('the host it trained on'),
  rule: nullableString.describe('the keep rule that decided'),
  warnings: z
    .array(z.string())
    .optional()
    .describe('what to look at though the run ended as it did, e.g. "gpu_idle: ..."; absent when none'),
});

/** `run --detach` (and `batch --detach`'s children): the ID, at once. */
export const SubmittedOutput = z.looseObject({
  experiment_id: id,
  status: z.literal('submitted'),
});

/** `batch` (and `wait` on a batch ID): the tournament's result. */
export const BatchResultOutput = z.looseObject({
  batch_id: nullableString,
  tag: z.string(),
  status: z.string().describe('completed; validation_failed when refused; submitted with --detach'),
  action: nullableString.describe('advance (git reset --hard to commit) or reset (back to the base)'),
  commit: nullableString,
  winner: nullableString.describe("the kept child's experiment ID"),
  best: figure,
  reason: z.string(),
  children: z.array(z.unknown()).describe('one experiment result per variant (IDs with --detach)'),
});

/** `wait` takes an experiment or a batch ID. */
export const WaitOutput = z.union([ExperimentResultOutput, BatchResultOutput]);

/** `rerun` / `retry`: the new run's result, and what was repeated. */
export const RepeatOutput = z.looseObject({
  ...ExperimentResultOutput.partial().shape,
  experiment_id: id,
  rerun_of: id.optional().describe('the experiment it reproduces (rerun)'),
  retry_of: id.optional().describe('the experiment it repeats (retry)'),
  commit: z.string(),
  command: z.array(z.string()),
  config: nullableString,
  datasets: z.array(z.string()),
  changed: z.string().describe('what differs from the original'),
});

const decisionOutput = z.looseObject({
  experiment_id: id,
  sequence: z.number().int(),
  status: z.string(),
  decision: z.enum(['keep', 'discard']).nullable(),
  action: nullableString,
  metric: figure,
  best: figure,
  delta: figure,
  near_miss: z.boolean(),
  consecutive_crashes: z.number().int(),
  should_abort: z.boolean(),
  rule: z.string(),
  failed_guard: z.string().optional(),
  compared_with: z.looseObject({ group: z.string(), experiment_id: nullableString, metric: figure }),
});

const environmentOutput = z.looseObject({
  host: z.string(),
  software: byName(z.string()),
  driver_version: nullableString,
  lockfiles: byName(z.string()).describe('file name → sha256'),
  variables: byName(z.string()).describe('secret values [redacted]'),
});

/** The request as recorded: secret values never (`[secret]`, or a keyed hash in the record). */
const requestOutput = z.looseObject({
  tag: z.string(),
  hypothesis: z.string(),
  category: z.string(),
  command: z.array(z.string()),
  repo: z.string(),
  commit: z.string(),
  env: byName(z.string()),
  secrets: byName(z.string()).optional(),
  datasets: z.array(z.string()),
});

/** One catalog row as lists carry it: `history`, `near-misses`, `best`. */
export const ListedRowOutput = z.looseObject({
  id,
  tag: z.string(),
  category: z.string(),
  hypothesis: z.string(),
  description: z.string(),
  status: z.string(),
  reason: nullableString,
  decision: z.enum(['keep', 'discard']).nullable(),
  action: nullableString,
  metric_name: z.string(),
  metric_direction: z.enum(['minimize', 'maximize']),
  metric: figure,
  best: figure,
  delta: figure,
  near_miss: z.boolean(),
  consecutive_crashes: z.number().int().nullable(),
  should_abort: z.boolean().nullable(),
  sequence: z.number().int().nullable(),
  rule: nullableString,
  failed_guard: nullableString,
  repo: z.string(),
  commit: z.string(),
  command: z.array(z.string()),
  gpu: nullableString,
  worker: nullableString,
  accelerator_class: nullableString,
  queued_ms: nullableNumber,
  attempts: z.number().int(),
  submitted_at: timestamp,
  started_at: nullableString,
  ended_at: nullableString,
  slot_seconds: nullableNumber.describe(
    "the run's wall time on its slot (the script's own training time is timings.training_seconds)",
  ),
  exit_code: z.number().int().nullable(),
  signal: nullableString,
  peak_vram_mb: nullableNumber,
  origin_kind: nullableString,
  origin_id: nullableString,
  metrics: byName(z.union([z.number(), z.string()]))
    .nullable()
    .describe('the `---` block, by metric name'),
});

/** One attempt of a run (domain/attempts.ts AttemptRecord). */
const attemptRecordOutput = z.looseObject({
  attempt: z.number().int(),
  host: z.string(),
  slot_id: z.string(),
  started_at: timestamp,
  ended_at: timestamp.nullable(),
  ended: z.enum(['completed', 'gpu_failed', 'lost', 'refused', 'infra_failed', 'canceled']).nullable(),
  why: nullableString,
  gpu_failure: z
    .looseObject({
      slot_id: z.string(),
      index: z.number().int(),
      uuid: z.string(),
      evidence: z.string(),
      at: timestamp,
    })
    .optional()
    .describe('the GPU that failed under the attempt, and what showed it'),
  reattached: z.number().int(),
  resumed_from: z
    .looseObject({
      experiment_id: z.string(),
      attempt: z.number().int(),
      written_at: timestamp,
      training_seconds: z.number(),
    })
    .nullable(),
  carried_seconds: z.number(),
  trained_seconds: nullableNumber,
  lost_seconds: nullableNumber.describe(
    'training time it lost: trained beyond the checkpoint its successor resumed from',
  ),
});

/** A run's GPU telemetry (domain/telemetry.ts GpuTelemetry): a summary and a bounded series per GPU, or why none. */
const gpuTelemetryOutput = z.union([
  z.looseObject({
    available: z.literal(true),
    interval_seconds: z.number(),
    started_at: timestamp,
    ended_at: timestamp,
    failed_queries: z.number().int(),
    gpus: z.array(
      z.looseObject({
        slot_id: z.string(),
        index: z.number().int(),
        uuid: z.string(),
        samples: z.number().int(),
        utilization_mean_percent: nullableNumber,
        utilization_max_percent: nullableNumber,
        memory_max_mb: nullableNumber,
        temperature_max_c: nullableNumber,
        power_mean_w: nullableNumber,
        energy_wh: nullableNumber,
        sm_clock_max_mhz: nullableNumber,
        throttle_reasons: z.array(z.string()),
      }),
    ),
    series: z
      .array(z.looseObject({ slot_id: z.string(), index: z.number().int(), points: z.array(z.looseObject({})) }))
      .describe('at most 60 points per GPU; each covers `samples` samples from `seconds` after the first'),
  }),
  z.looseObject({ available: z.literal(false), reason: z.string().describe('e.g. a CPU slot, no nvidia-smi') }),
]);

/** One experiment's whole record: `show`'s `record`. */
export const RecordOutput = z.looseObject({
  ...ListedRowOutput.shape,
  request: requestOutput,
  resolved_config: z.unknown().describe('the config file as it ran, exactly as written'),
  patch: nullableString,
  patch_sha256: nullableString,
  patch_bytes: nullableNumber,
  patch_uri: nullableString.describe('the patch as a fleet store object'),
  patch_files: z.array(z.string()).nullable(),
  datasets: z.array(z.string()).nullable(),
  environment: environmentOutput.nullable(),
  placement: z.looseObject({}).nullable(),
  log_path: nullableString,
  log_tail: nullableString,
  heartbeats: z.looseObject({}).nullable(),
  timings: z.looseObject({}).nullable(),
  phase: z.enum(['setup', 'training']).nullable(),
  containment: nullableString,
  peak_memory_bytes: nullableNumber,
  oom_kills: nullableNumber,
  submitted_by: nullableString,
  dataset_versions: z.array(z.looseObject({ ref: z.string(), dataset: z.string(), version: z.number() })),
  events: z.array(z.looseObject({ at: timestamp, status: z.string(), note: nullableString })),
  artifacts: z.array(z.looseObject({ path: z.string(), sha256: z.string(), bytes: z.number() })),
  attempt_records: z.array(attemptRecordOutput).nullable().optional(),
  gpu_telemetry: gpuTelemetryOutput.nullable().optional(),
  warnings: z.array(z.string()).nullable().optional().describe('e.g. "gpu_idle: ..."; null before training'),
});

const artifactOutput = z.looseObject({
  path: z.string().describe("relative to the run's artifact directory"),
  sha256: z.string(),
  bytes: z.number(),
  uri: nullableString.describe('the fleet store object; null when recorded before the store or not uploaded'),
});

/** `artifacts ID`: the run's artifacts as the record keeps them. */
export const ArtifactsOutput = z.looseObject({
  experiment_id: id,
  artifacts: z.array(artifactOutput),
});

/** `artifacts ID --get PATH --out FILE`: the artifact fetched from the store and where it was written. */
export const ArtifactGetOutput = artifactOutput.extend({
  experiment_id: id,
  out: z.string().describe('the absolute path written'),
});

/** `show ID`: the live state (while Temporal keeps it), the catalog record and the audit trail. */
export const ShowOutput = z.looseObject({
  experiment_id: id,
  tag: z.string().optional(),
  status: z.string().optional(),
  request: requestOutput.optional(),
  submitted_at: timestamp.optional(),
  timeline: z.array(z.looseObject({ at: timestamp, status: z.string() })).optional(),
  validation: z.looseObject({}).nullable().optional(),
  placement: z.looseObject({}).nullable().optional(),
  gpu: nullableString.optional(),
  worker: nullableString.optional(),
  attempts: z.number().int().optional(),
  attempt_records: z
    .array(attemptRecordOutput)
    .optional()
    .describe('each attempt: where, how it ended, what it resumed from and lost'),
  training: z
    .looseObject({ metrics: byName(z.union([z.number(), z.string()])).nullable() })
    .nullable()
    .optional(),
  metric: figure.optional(),
  decision: decisionOutput.nullable().optional(),
  reason: nullableString.optional(),
  metric_policy: z.looseObject({ name: z.string(), direction: z.enum(['minimize', 'maximize']) }).optional(),
  submitted_by: nullableString.optional(),
  queue_position: z.looseObject({ position: z.number().int(), length: z.number().int() }).nullable(),
  lined_up: z
    .looseObject({ slot_id: z.string(), behind: nullableString })
    .nullable()
    .optional()
    .describe('the GPU a queued run is lined up on, and the run it starts after there; null: not lined up'),
  record: RecordOutput.nullable().describe('the catalog record, or null'),
  audit: z.array(
    z.looseObject({
      at: timestamp,
      action: z.string(),
      actor: nullableString,
      role: nullableString,
      allowed: z.boolean(),
      detail: nullableString,
    }),
  ),
});

/** `history --json` and `near-misses --json`: catalog rows, newest first. */
export const HistoryOutput = z.array(ListedRowOutput);

/** `best --tag T`: the best kept run, and the best per accelerator class. */
export const BestOutput = z.looseObject({
  ...ListedRowOutput.shape,
  by_class: byName(ListedRowOutput).describe('the best per accelerator class'),
});

const bestKept = z.looseObject({ id, metric: figure, commit: z.string(), accelerator_class: nullableString });

/** `report summary --tag T`. */
export const SummaryOutput = z.looseObject({
  tag: z.string(),
  runs: z.number().int().describe('kept + discarded + crashed'),
  kept: z.number().int(),
  discarded: z.number().int(),
  crashed: z.number().int(),
  refused: z.number().int(),
  infrastructure: z.number().int(),
  canceled: z.number().int(),
  keep_rate: z.number(),
  crash_rate: z.number(),
  best: bestKept.nullable(),
  best_by_class: byName(bestKept),
  categories: z.array(
    z.looseObject({ category: z.string(), runs: z.number().int(), kept: z.number().int(), keep_rate: z.number() }),
  ),
  progression: z.array(z.looseObject({ id, metric: figure, commit: z.string(), at: nullableString })),
  queue_wait_seconds: z.looseObject({ median: nullableNumber, max: nullableNumber }),
  by_status: byName(z.number().int()),
});

/** `report tags`: one row per tag. */
export const TagsOutput = z.array(
  z.looseObject({
    tag: z.string(),
    total: z.number().int(),
    runs: z.number().int(),
    kept: z.number().int(),
    discarded: z.number().int(),
    crashed: z.number().int(),
    refused: z.number().int(),
    infrastructure: z.number().int(),
    canceled: z.number().int(),
    keep_rate: z.number(),
    crash_rate: z.number(),
    best: figure,
    direction: z.string(),
    last_at: z.string(),
  }),
);

/** `report diff A B`: what differs between two runs. */
export const DiffOutput = z.looseObject({
  a: id,
  b: id,
  metric_name: z.string(),
  metric: z.looseObject({ a: figure, b: figure, delta: figure.describe('b minus a') }),
  metrics: z.array(
    z.looseObject({
      key: z.string(),
      a: z.union([z.number(), z.string()]).nullable(),
      b: z.union([z.number(), z.string()]).nullable(),
      delta: figure,
    }),
  ),
  config: z.array(z.looseObject({ key: z.string(), a: z.unknown(), b: z.unknown() })),
  commits: z.looseObject({ a: z.string(), b: z.string() }),
  code: z.string().describe('git diff A B, or the two recorded patches; empty when identical'),
});

const tagPolicy = z.looseObject({
  metric_name: z.string(),
  direction: z.enum(['minimize', 'maximize']),
  near_miss_threshold: z.number(),
  max_consecutive_crashes: z.number().int(),
  compare_across_classes: z.boolean(),
  min_improvement: z.number(),
  guards: z.array(z.unknown()),
  allow_env: z.array(z.string()).optional(),
});

/** `tag create` and `tag show`: the tag's policy, best per group, counts and recent decisions. */
export const TagStateOutput = z.looseObject({
  tag: z.string(),
  policy: tagPolicy,
  best: byName(z.looseObject({ experiment_id: id, metric: figure, commit: z.string() })).describe(
    'best run per comparability group (accelerator class, or "all")',
  ),
  consecutive_crashes: z.number().int(),
  counts: z.looseObject({}),
  recent: z.array(decisionOutput),
});

/** `tag stop T`. */
export const TagStopOutput = z.looseObject({ tag: z.string(), canceled: z.array(id) });

/** `strategy --tag T`. */
export const StrategyOutput = z.looseObject({
  tag: z.string(),
  mode: z.string(),
  reason: z.string(),
  manual: z.boolean(),
  updated_at: nullableString,
});

/** `suggest --tag T [--k K]`. */
export const SuggestOutput = z.looseObject({
  tag: z.string(),
  mode: z.string(),
  reason: z.string(),
  categories: z.array(
    z.looseObject({
      category: z.string(),
      runs: z.number().int(),
      kept: z.number().int(),
      keep_rate: z.number(),
      crashes: z.number().int(),
    }),
  ),
  under_explored: z.array(z.string()),
  high_yield: z.array(z.string()),
  combine: z.array(z.looseObject({ a: z.string(), b: z.string(), hypotheses: z.array(z.string()), why: z.string() })),
  trend: z.looseObject({
    recent_metrics: z.array(z.number()),
    slope_per_run: nullableNumber,
    direction: z.string(),
  }),
  variants: z.array(z.looseObject({ kind: z.string(), category: z.string(), why: z.string() })).optional(),
});

const slotEntry = z.looseObject({
  slot: z.looseObject({
    slot_id: z.string(),
    host: z.string(),
    index: z.number().int(),
    accelerator_class: z.string(),
    memory_mb: z.number(),
  }),
  lease: z.looseObject({ experiment_id: id }).nullable(),
  next: z
    .looseObject({ lease: z.looseObject({ experiment_id: id, lease_id: z.string() }) })
    .nullable()
    .optional()
    .describe("the run lined up behind the lease: its worker hands it the GPU at the current run's exit"),
  draining: z.boolean(),
  drain_reason: nullableString,
  drained_by: z.enum(['operator', 'health']).nullable(),
});

/** `pool`: every slot, its state and lease; the queue; fair shares; reservations and why each run waits. */
export const PoolOutput = z.looseObject({
  hosts: byName(z.looseObject({ online: z.boolean(), last_heartbeat: z.number() })),
  slots: z.array(slotEntry),
  queue: z.array(z.looseObject({ experiment_id: id })),
  policy: z.looseObject({}).describe('the placement policy'),
  heartbeat_limit_ms: z.number(),
  leases_granted: z.number().int(),
  health: byName(z.looseObject({})),
  shares: z.array(
    z.looseObject({ tag: z.string(), running: z.number().int(), gpu_seconds: z.number(), share: z.number() }),
  ),
  reservations: z
    .array(
      z.looseObject({
        experiment_id: id,
        host: z.string(),
        slot_ids: z.array(z.string()),
        gpus: z.number().int(),
        starts_by: nullableNumber.describe('epoch ms by which its GPUs are free at the latest; null: unknown'),
      }),
    )
    .describe('GPUs held for waiting runs: later runs use them only if they surely end before starts_by'),
  waiting: z
    .array(z.looseObject({ experiment_id: id, why: z.string() }))
    .describe('every waiting run, in the order it is served, and why it waits'),
});

/** `pool drain` / `pool undrain`: what changed. */
export const DrainOutput = z.looseObject({
  target: z.string(),
  drained: z.boolean().describe('true for drain, false for undrain'),
  changed: z.array(z.string()).describe('slots whose state this changed'),
  unchanged: z.array(z.string()).describe('slots that were already in that state'),
  leased: z
    .array(z.looseObject({ slot_id: z.string(), experiment_id: id }))
    .describe('runs still holding a lease on those slots (a drain lets them finish)'),
});

/** `pool repair`: whether the pool was stalled, and what the repair gave back and dropped. */
export const PoolRepairOutput = z.looseObject({
  stalled: z.boolean().describe("whether the pool's workflow tasks were failing"),
  failure: z.string().nullable().describe("why the stalled run's latest workflow task failed"),
  run_id: z.string().describe('the run that was repaired'),
  repaired_run_id: z.string().describe('the run that serves now (the same when nothing was to repair)'),
  reset_to_event_id: z.number().int().nullable().describe('the last good workflow task, reset to'),
  resent: z.number().int().describe('signals given back to the pool'),
  dropped: z
    .array(
      z.looseObject({
        signal: z.string(),
        event_id: z.number().int(),
        sent_by: z.string().nullable(),
        reason: z.string(),
      }),
    )
    .describe('signals not given back: unreadable, or failing the pool'),
});

/** `health`: the latest scheduled check per host. */
export const HealthOutput = byName(
  z.looseObject({ checked_at: timestamp, problems: z.array(z.looseObject({})), report: z.looseObject({}) }),
);

const datasetVersionRow = z.looseObject({
  dataset: z.string(),
  version: z.number().int(),
  status: z.enum(['open', 'sealed', 'passed', 'failed']),
  workflow_id: z.string(),
  expected_shards: z.number().int(),
  arrived_shards: z.number().int(),
  opened_at: timestamp,
  sealed_at: nullableString,
  seal_reason: nullableString,
  decided_at: nullableString,
  records: z.number().int().nullable(),
  manifest_sha256: nullableString,
});

/** `data versions [DATASET]`. */
export const DataVersionsOutput = z.array(datasetVersionRow);

/** `data show NAME@V` (and `show expctl-dataset-NAME-vV`): the version, its shards, gates, late shards, alerts. */
export const DataShowOutput = z.looseObject({
  ...datasetVersionRow.shape,
  shards: z.array(
    z.looseObject({
      index: z.number().int(),
      count: z.number().int(),
      sha256: z.string(),
      bytes: z.number(),
      records: z.number().int().nullable(),
      schema: byName(z.string()).nullable().describe('column name → type'),
      file_name: z.string(),
      arrived_at: timestamp,
      deliveries: z.number().int(),
    }),
  ),
  gates: z.array(z.looseObject({ gate: z.string(), passed: z.boolean(), code: nullableString, message: z.string() })),
  late_shards: z.array(z.looseObject({ shard_index: z.number().int(), shard_count: z.number().int() })),
  alerts: z.array(z.looseObject({})),
});

/** `gates`: per day and gate. */
export const GatesOutput = z.array(
  z.looseObject({
    day: z.string(),
    gate: z.string(),
    checked: z.number().int(),
    passed: z.number().int(),
    pass_rate: z.number(),
    failures: byName(z.number().int()).describe('failure code → count'),
  }),
);

/** `alerts`. */
export const AlertsOutput = z.array(
  z.looseObject({
    id: z.number().int(),
    at: timestamp,
    kind: z.string(),
    subject: z.string(),
    code: nullableString,
    message: z.string(),
    command_exit: z.number().int().nullable(),
    command_error: nullableString,
  }),
);

/** `keys init` / `keys rotate` / `keys list`: key ids, never a key. */
export const KeysOutput = z.looseObject({
  file: z.string().optional().describe('the keyring file (init, rotate)'),
  source: z.string().optional().describe('where the keyring was read from (list)'),
  current: z.string().describe('the id of the key new payloads are encrypted with'),
  previous: z.string().optional().describe('the key that was current before (rotate)'),
  keys: z.array(z.string()).optional().describe('every key id in the keyring (list)'),
});

/** `promote` (and `approve`/`reject` of a promotion): where the promotion ended. */
export const PromoteOutput = z.looseObject({
  promotion_id: id,
  model: z.string(),
  alias: z.string(),
  experiment_id: id,
  status: z.string(),
  code: nullableString,
  reason: nullableString,
  version: z.number().int().nullable(),
  metric_name: nullableString,
  candidate_metric: figure,
  incumbent_version: z.number().int().nullable(),
  incumbent_metric: figure,
  threshold: z.number(),
  holdout_experiment_id: nullableString,
  requested_by: nullableString,
  decided_by: nullableString,
});

/** `logs` as an MCP tool: a page of the log, in bytes. */
export const LogsOutput = z.looseObject({
  experiment_id: z.string(),
  offset: z.number().describe('byte offset of text in the log'),
  next_offset: z.number().describe('offset of the next page'),
  size: z.number().describe('bytes in the log when read'),
  eof: z.boolean(),
  text: z.string(),
  note: z.string().optional().describe('why there is no log yet'),
});

/** The outputs `expctl schema NAME` prints, by name. */
export const OUTPUT_SCHEMAS = {
  run: ExperimentResultOutput,
  submitted: SubmittedOutput,
  batch: BatchResultOutput,
  wait: WaitOutput,
  cancel: ExperimentResultOutput,
  rerun: RepeatOutput,
  retry: RepeatOutput,
  show: ShowOutput,
  artifacts: ArtifactsOutput,
  'artifacts-get': ArtifactGetOutput,
  history: HistoryOutput,
  'near-misses': HistoryOutput,
  best: BestOutput,
  'report-summary': SummaryOutput,
  'report-tags': TagsOutput,
  'report-diff': DiffOutput,
  'tag-create': TagStateOutput,
  'tag-show': TagStateOutput,
  'tag-stop': TagStopOutput,
  strategy: StrategyOutput,
  suggest: SuggestOutput,
  pool: PoolOutput,
  'pool-drain': DrainOutput,
  'pool-undrain': DrainOutput,
  'pool-repair': PoolRepairOutput,
  health: HealthOutput,
  'data-versions': DataVersionsOutput,
  'data-show': DataShowOutput,
  gates: GatesOutput,
  alerts: AlertsOutput,
  keys: KeysOutput,
  promote: PromoteOutput,
} as const satisfies Record<string, z.ZodType>;

export type OutputName = keyof typeof OUTPUT_SCHEMAS;

/** An output's JSON Schema, as `expctl schema NAME` prints it. */
export function outputJsonSchema(name: OutputName): unknown {
  return z.toJSONSchema(OUTPUT_SCHEMAS[name], { io: 'output', unrepresentable: 'any' });
}
