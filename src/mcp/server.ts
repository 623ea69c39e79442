import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { execa } from 'execa';
import {
  BatchResultOutput,
  BestOutput,
  ExperimentResultOutput,
  HistoryOutput,
  LogsOutput,
  ShowOutput,
  SuggestOutput,
  WaitOutput,
} from './outputs.js';
import { jsonResult, logsResult, type CliOutcome } from './result.js';
import { LOG_PAGE_DEFAULT_BYTES } from '../domain/limits.js';
import {
  BatchInput,
  batchArgs,
  HistoryInput,
  historyArgs,
  IdInput,
  idArgs,
  LogsInput,
  logsArgs,
  RunInput,
  runArgs,
  SuggestInput,
  TagInput,
  tagArgs,
  type Invocation,
} from './tools.js';

/**
 * `expctl mcp`: the CLI's agent commands as MCP tools over stdio. Each call runs `expctl` itself
 * (an argv array, never a shell) in this server's environment, so it acts with the caller's
 * credential and role, and answers with the JSON the CLI printed: the CLI stays the one
 * implementation of every command, and there is no second copy of its rules to drift.
 */

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));
const VERSION = (
  JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
/** Long calls (run, batch, wait) say they are alive, so a progress-aware client keeps waiting. */
const HEARTBEAT_MS = 15_000;
/** `logs --all` is read whole to cut a page from it; a bigger log fails the call, not the server. */
const LOG_MAX_BUFFER = 256 * 1024 * 1024;

function heartbeat(extra: Extra): () => void {
  const token = extra._meta?.progressToken;
  if (token === undefined) return () => undefined;
  let beats = 0;
  const timer = setInterval(() => {
    beats++;
    extra
      .sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: beats } })
      .catch(() => undefined);
  }, HEARTBEAT_MS);
  return () => clearInterval(timer);
}

/** Runs `expctl ARGS` to its end; cancelling the call (or closing the server) stops the process. */
async function expctl<Binary extends boolean = false>(
  invocation: Invocation,
  extra: Extra,
  binary?: Binary,
): Promise<Omit<CliOutcome, 'stdout'> & { stdout: Binary extends true ? Uint8Array : string }> {
  const stop = heartbeat(extra);
  try {
    const result = await execa(process.execPath, [EXPCTL, ...invocation.args], {
      // A repository that is not there: the CLI, run from here, says so in its own words.
      cwd: fs.existsSync(invocation.cwd) ? invocation.cwd : process.cwd(),
      reject: false,
      stdin: 'ignore',
      cancelSignal: extra.signal,
      maxBuffer: LOG_MAX_BUFFER,
      encoding: binary ? 'buffer' : 'utf8',
    });
    return {
      stdout: result.stdout as never,
      stderr: typeof result.stderr === 'string' ? result.stderr : Buffer.from(result.stderr).toString('utf8'),
      exitCode: result.exitCode,
      failure: result.failed && result.exitCode === undefined ? result.shortMessage : undefined,
    };
  } finally {
    stop();
  }
}

const json = async (invocation: Invocation, extra: Extra, arrayKey?: string): Promise<CallToolResult> =>
  jsonResult(await expctl(invocation, extra), arrayKey);

const ASYNC_HINT = 'Blocks until decided; for long runs pass detach and call wait.';

export function createServer(cwd = process.cwd()): McpServer {
  const server = new McpServer({ name: 'expctl', version: VERSION });
  const readOnly = { readOnlyHint: true, openWorldHint: false };
  server.registerTool(
    'run',
    {
      description: `Run one experiment (expctl run --json): the keep/discard decision and the git action to take. ${ASYNC_HINT}`,
      inputSchema: RunInput,
      outputSchema: ExperimentResultOutput,
    },
    (input, extra) => json(runArgs(input, cwd), extra),
  );
  server.registerTool(
    'batch',
    {
      description: `Run K variant commits of one base in parallel; keeps at most one, the best that beats the tag's best (expctl batch --json). ${ASYNC_HINT}`,
      inputSchema: BatchInput,
      outputSchema: BatchResultOutput,
    },
    (input, extra) => json(batchArgs(input, cwd), extra),
  );
  server.registerTool(
    'wait',
    {
      description: 'Wait for an experiment or batch and return its result, as run or batch would (expctl wait --json).',
      inputSchema: IdInput,
      outputSchema: WaitOutput,
      annotations: readOnly,
    },
    (input, extra) => json(idArgs('wait', input, cwd), extra),
  );
  server.registerTool(
    'show',
    {
      description:
        "An experiment's live state, request, timeline, catalog record and audit trail (expctl show --json).",
      inputSchema: IdInput,
      outputSchema: ShowOutput,
      annotations: readOnly,
    },
    (input, extra) => json(idArgs('show', input, cwd), extra),
  );
  server.registerTool(
    'history',
    {
      description:
        'Experiments from the catalog, newest first, filtered by tag, status, category (expctl history --json).',
      inputSchema: HistoryInput,
      outputSchema: HistoryOutput,
      annotations: readOnly,
    },
    (input, extra) => json(historyArgs(input, cwd), extra, 'experiments'),
  );
  server.registerTool(
    'best',
    {
      description: "The tag's best kept run, and the best per accelerator class (expctl best --json).",
      inputSchema: TagInput,
      outputSchema: BestOutput,
      annotations: readOnly,
    },
    (input, extra) => json(tagArgs('best', input, cwd), extra),
  );
  server.registerTool(
    'suggest',
    {
      description:
        'What to try next on a tag: category statistics, under-explored categories, near misses to combine, trend; with k, K diverse variants for batch (expctl suggest --json).',
      inputSchema: SuggestInput,
      outputSchema: SuggestOutput,
      annotations: readOnly,
    },
    (input, extra) => json(tagArgs('suggest', input, cwd), extra),
  );
  server.registerTool(
    'cancel',
    {
      description:
        'Cancel an experiment (lease released, processes killed) and return its final result (expctl cancel --json).',
      inputSchema: IdInput,
      outputSchema: ExperimentResultOutput,
      annotations: { destructiveHint: true },
    },
    (input, extra) => json(idArgs('cancel', input, cwd), extra),
  );
  server.registerTool(
    'logs',
    {
      description:
        "A page of an experiment's training log, in bytes: its tail by default, or from offset (next_offset continues). The CLI has no paging flags, so this reads `expctl logs --all` and cuts the page.",
      inputSchema: LogsInput,
      outputSchema: LogsOutput,
      annotations: readOnly,
    },
    async (input, extra) =>
      logsResult(
        input.id,
        await expctl(logsArgs(input, cwd), extra, true),
        input.limit ?? LOG_PAGE_DEFAULT_BYTES,
        input.offset,
      ),
  );
  return server;
}

/** Serves on stdin/stdout until the client closes stdin; calls still running are stopped then. */
export async function serveMcp(): Promise<void> {
  const server = createServer();
  process.stdin.once('end', () => void server.close());
  await server.connect(new StdioServerTransport());
}
