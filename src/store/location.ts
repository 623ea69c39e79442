import path from 'node:path';
import { ConfigurationError, stateDir } from '../shared/settings.js';

/** Where the fleet store is: a directory (the default, $EXPCTL_HOME/store) or an S3-compatible bucket. */
export type StoreLocation = { kind: 'filesystem'; dir: string } | { kind: 's3'; bucket: string; prefix: string };

/**
 * EXPCTL_STORE: unset for $EXPCTL_HOME/store; an absolute path or file:// URL for another
 * directory (a shared mount); `s3://bucket/prefix` for a bucket, reached through the standard AWS
 * variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
 */
export function storeLocation(env: NodeJS.ProcessEnv = process.env): StoreLocation {
  const raw = env.EXPCTL_STORE;
  if (raw === undefined || raw === '') return { kind: 'filesystem', dir: path.join(stateDir(env), 'store') };
  if (raw.startsWith('s3://')) {
    const [bucket = '', ...rest] = raw.slice('s3://'.length).split('/');
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
      throw new ConfigurationError(`EXPCTL_STORE names no valid bucket: "${raw}" (expected s3://BUCKET/PREFIX)`);
    return { kind: 's3', bucket, prefix: rest.filter(Boolean).join('/') };
  }
  if (raw.startsWith('file://')) return { kind: 'filesystem', dir: new URL(raw).pathname };
  if (path.isAbsolute(raw)) return { kind: 'filesystem', dir: raw };
  throw new ConfigurationError(
    `EXPCTL_STORE must be an absolute directory, a file:// URL or s3://BUCKET/PREFIX, not "${raw}"`,
  );
}
