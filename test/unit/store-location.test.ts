import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../src/shared/settings.js';
import { storeLocation } from '../../src/store/location.js';
import { S3Store, s3ClientConfig } from '../../src/store/s3-store.js';

describe('EXPCTL_STORE', () => {
  it('is $EXPCTL_HOME/store when unset or empty', () => {
    expect(storeLocation({ EXPCTL_HOME: '/srv/expctl' })).toEqual({ kind: 'filesystem', dir: '/srv/expctl/store' });
    expect(storeLocation({ EXPCTL_HOME: '/srv/expctl', EXPCTL_STORE: '' })).toEqual({
      kind: 'filesystem',
      dir: '/srv/expctl/store',
    });
    expect(storeLocation({})).toEqual({ kind: 'filesystem', dir: path.resolve('.expctl', 'store') });
  });

  it('takes an absolute directory or a file:// URL (a shared mount)', () => {
    expect(storeLocation({ EXPCTL_STORE: '/mnt/fleet/store' })).toEqual({
      kind: 'filesystem',
      dir: '/mnt/fleet/store',
    });
    expect(storeLocation({ EXPCTL_STORE: 'file:///mnt/fleet/store' })).toEqual({
      kind: 'filesystem',
      dir: '/mnt/fleet/store',
    });
  });

  it('takes s3://bucket and s3://bucket/prefix, the prefix without stray slashes', () => {
    expect(storeLocation({ EXPCTL_STORE: 's3://ml-runs' })).toEqual({ kind: 's3', bucket: 'ml-runs', prefix: '' });
    expect(storeLocation({ EXPCTL_STORE: 's3://ml-runs/' })).toEqual({ kind: 's3', bucket: 'ml-runs', prefix: '' });
    expect(storeLocation({ EXPCTL_STORE: 's3://ml-runs/team-a//expctl/' })).toEqual({
      kind: 's3',
      bucket: 'ml-runs',
      prefix: 'team-a/expctl',
    });
  });

  it('refuses a relative path, another scheme, and a bucket name S3 would refuse, saying what it expects', () => {
    const refusal = (value: string) => () => storeLocation({ EXPCTL_STORE: value });
    expect(refusal('store')).toThrow(ConfigurationError);
    expect(refusal('store')).toThrow(
      'EXPCTL_STORE must be an absolute directory, a file:// URL or s3://BUCKET/PREFIX, not "store"',
    );
    expect(refusal('gs://bucket/p')).toThrow('not "gs://bucket/p"');
    expect(refusal('s3://')).toThrow('EXPCTL_STORE names no valid bucket: "s3://" (expected s3://BUCKET/PREFIX)');
    expect(refusal('s3://My_Bucket/p')).toThrow('names no valid bucket');
    expect(refusal('s3://ab/p')).toThrow('names no valid bucket');
  });
});

describe("the S3 client's settings, from the standard AWS variables", () => {
  const where = 's3://ml-runs/p';

  it('addresses an S3-compatible endpoint path-style, with the keys given', () => {
    const config = s3ClientConfig(where, {
      AWS_ENDPOINT_URL: 'http://10.0.0.5:8333',
      AWS_ACCESS_KEY_ID: 'AKIA1',
      AWS_SECRET_ACCESS_KEY: 'secret',
      AWS_REGION: 'eu-west-1',
    });
    expect(config).toMatchObject({
      endpoint: 'http://10.0.0.5:8333',
      forcePathStyle: true,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIA1', secretAccessKey: 'secret' },
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 5_000, socketTimeout: 30_000 },
    });
  });

  it('prefers the S3-only endpoint variable, and defaults the region', () => {
    const config = s3ClientConfig(where, {
      AWS_ENDPOINT_URL: 'http://general:1',
      AWS_ENDPOINT_URL_S3: 'https://s3.internal:9000',
    });
    expect(config).toMatchObject({ endpoint: 'https://s3.internal:9000', region: 'us-east-1' });
  });

  it("leaves AWS itself virtual-hosted and the credentials to the SDK's chain when no keys are set", () => {
    const config = s3ClientConfig(where, { AWS_DEFAULT_REGION: 'us-west-2' });
    expect(config.endpoint).toBeUndefined();
    expect(config.forcePathStyle).toBeUndefined();
    expect(config.credentials).toBeUndefined();
    expect(config.region).toBe('us-west-2');
  });

  it('refuses half a key pair and an endpoint that is no URL', () => {
    expect(() => s3ClientConfig(where, { AWS_SECRET_ACCESS_KEY: 's' })).toThrow(
      `${where} needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; only AWS_SECRET_ACCESS_KEY is set`,
    );
    expect(() => s3ClientConfig(where, { AWS_ENDPOINT_URL: 'minio:9000' })).toThrow(ConfigurationError);
  });
});

describe('an S3 store without credentials', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  });

  it("says so as configuration when the SDK's chain finds none either, before any request", async () => {
    // The chain reads this process's variables and files: none of them, and no instance metadata.
    for (const name of Object.keys(process.env)) if (name.startsWith('AWS_')) delete process.env[name];
    Object.assign(process.env, {
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: '/nonexistent/config',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
    });
    // Nothing listens on port 9: a request that went out would fail `unreachable` instead.
    const store = new S3Store(
      { kind: 's3', bucket: 'ml-runs', prefix: 'p' },
      { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' },
    );
    const lookup = store.hasObject('a'.repeat(64));
    await expect(lookup).rejects.toBeInstanceOf(ConfigurationError);
    await expect(lookup).rejects.toThrow(
      'no AWS credentials for the store s3://ml-runs/p: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)',
    );
  });
});
