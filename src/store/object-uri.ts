import { checkSha256, objectKey } from './store.js';

/**
 * The store an object's recorded URI lives in, as EXPCTL_STORE names stores (`file:///dir` or
 * `s3://bucket/prefix`): a reader opens the store the record names, whatever its own default is.
 */
export function storeOfObjectUri(uri: string, sha256: string): string {
  const key = `/${objectKey(checkSha256(sha256))}`;
  if (!uri.endsWith(key) || !/^(file|s3):\/\//.test(uri))
    throw new Error(`${JSON.stringify(uri).slice(0, 200)} is not the store address of object ${sha256}`);
  return uri.slice(0, -key.length);
}
