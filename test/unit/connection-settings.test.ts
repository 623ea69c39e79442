import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectionSettings } from '../../src/temporal/connection.js';

// Every expctl process (CLI, orchestrator, workers) connects through connectionSettings: a real
// cluster's mTLS or API key comes from Temporal's own environment variables or TOML profile.
describe('connection settings for a real cluster', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-envconfig-'));
  fs.writeFileSync(path.join(dir, 'client.pem'), 'client certificate\n');
  fs.writeFileSync(path.join(dir, 'client.key'), 'client key\n');
  fs.writeFileSync(path.join(dir, 'ca.pem'), 'server ca\n');
  const profile = path.join(dir, 'temporal.toml');
  fs.writeFileSync(
    profile,
    [
      '[profile.prod]',
      'address = "temporal.example.com:7233"',
      'namespace = "research"',
      'api_key = "profile-api-key"',
      '[profile.prod.tls]',
      `client_cert_path = "${path.join(dir, 'client.pem')}"`,
      `client_key_path = "${path.join(dir, 'client.key')}"`,
      `server_ca_cert_path = "${path.join(dir, 'ca.pem')}"`,
      'server_name = "temporal.example.com"',
    ].join('\n'),
  );
  const home = path.join(dir, 'home');

  it('reads mTLS and an API key from a TOML profile', () => {
    const { connectionOptions, namespace } = connectionSettings({
      TEMPORAL_CONFIG_FILE: profile,
      TEMPORAL_PROFILE: 'prod',
      EXPCTL_HOME: home,
    });
    expect(namespace).toBe('research');
    expect(connectionOptions.address).toBe('temporal.example.com:7233');
    expect(connectionOptions.apiKey).toBe('profile-api-key');
    const tls = connectionOptions.tls as {
      serverNameOverride?: string;
      clientCertPair?: { crt: Uint8Array; key: Uint8Array };
      serverRootCACertificate?: Uint8Array;
    };
    expect(tls.serverNameOverride).toBe('temporal.example.com');
    expect(Buffer.from(tls.clientCertPair!.crt).toString()).toBe('client certificate\n');
    expect(Buffer.from(tls.clientCertPair!.key).toString()).toBe('client key\n');
    expect(Buffer.from(tls.serverRootCACertificate!).toString()).toBe('server ca\n');
  });

  it('lets the environment override the profile, as the Temporal CLI does', () => {
    const { connectionOptions, namespace } = connectionSettings({
      TEMPORAL_CONFIG_FILE: profile,
      TEMPORAL_PROFILE: 'prod',
      TEMPORAL_ADDRESS: 'other.example.com:7233',
      TEMPORAL_NAMESPACE: 'drills',
      TEMPORAL_API_KEY: 'env-api-key',
      EXPCTL_HOME: home,
    });
    expect(connectionOptions.address).toBe('other.example.com:7233');
    expect(namespace).toBe('drills');
    expect(connectionOptions.apiKey).toBe('env-api-key');
  });

  it('without any setting, a local stack (or localhost:7233) in plain text', () => {
    const { connectionOptions, namespace } = connectionSettings({ EXPCTL_HOME: home });
    expect(connectionOptions.address).toBe('localhost:7233');
    expect(connectionOptions.tls).toBeFalsy();
    expect(connectionOptions.apiKey).toBeUndefined();
    expect(namespace).toBe('default');
  });
});
