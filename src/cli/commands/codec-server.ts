import { payloadCodec } from '../../security/codec.js';
import { codecToken, defaultCodecPort, startCodecServer, uiOrigins } from '../../security/codec-server.js';
import { runningDevStack } from '../../temporal/connection.js';
import { CliError } from '../output.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

export interface CodecServerCommandOptions {
  port?: number;
  host?: string;
  uiOrigin: string[];
  tokenFile?: string;
}

/**
 * `expctl codec-server`: Temporal's remote codec endpoint, so the Web UI (or `temporal
 * --codec-endpoint`) shows expctl's encrypted payloads in plaintext to whoever holds the token.
 */
export async function codecServerCommand(options: CodecServerCommandOptions): Promise<void> {
  const codec = await payloadCodec();
  let origins = options.uiOrigin.flatMap((origin) => {
    try {
      return [new URL(origin).origin];
    } catch {
      throw new CliError(`--ui-origin ${origin}: expected the Web UI's URL, such as http://localhost:8233`);
    }
  });
  if (origins.length === 0) {
    const dev = runningDevStack();
    if (!dev)
      throw new CliError(
        'no --ui-origin given and no expctl dev running for this state directory: pass the Web UI URL it serves, e.g. --ui-origin https://temporal.example.com',
      );
    origins = uiOrigins(dev.uiUrl);
  }
  const { token, file, created } = await codecToken(options.tokenFile);
  const server = await startCodecServer({
    codec,
    token,
    uiOrigins: origins,
    host: options.host,
    port: options.port ?? defaultCodecPort().port,
  });
  const stop = () => void server.close().then(() => process.exit(EXIT_CODES.decided));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  console.log(`expctl codec-server: listening on ${server.url} for the Web UI at ${origins.join(', ')}`);
  console.log(`  token:  ${file}${created ? ' (new)' : ''}`);
  console.log(
    `  Codec endpoint to paste into the Web UI's codec server setting (it holds the token; keep it private):`,
  );
  console.log(`    ${server.endpoint}`);
  console.log(`  Other clients may POST to ${server.url}/decode with "Authorization: Bearer <token>" instead.`);
  if (!['127.0.0.1', 'localhost', '::1'].includes(options.host ?? '127.0.0.1'))
    console.error(
      'expctl codec-server: listening beyond this host over plain HTTP: put a TLS proxy in front, or the token and payloads cross the network readable',
    );
}
