import { FilesystemStore } from './fs-store.js';
import { storeLocation } from './location.js';
import type { FleetStore } from './store.js';

/** The fleet store EXPCTL_STORE names (see location.ts); the S3 client is loaded only when one is used. */
export async function openStore(env: NodeJS.ProcessEnv = process.env): Promise<FleetStore> {
  const location = storeLocation(env);
  if (location.kind === 'filesystem') return new FilesystemStore(location.dir);
  const { S3Store } = await import('./s3-store.js');
  return new S3Store(location, env);
}
