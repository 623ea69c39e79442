/**
 * The fleet's git remote as expctl serves it: git's smart HTTP protocol (`git http-backend`
 * behind a small Node server) where every request carries a signed request of this fleet.
 * Submitters may push (only new refs/expctl/commits/<sha>), workers and submitters may fetch;
 * anyone else who reaches the port gets nothing, not even the list of refs.
 */
import type crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { deniedMessage, permits, type Certificate } from '../domain/authorization.js';
import { FLEET_REMOTE_TARGET, smartGitAction } from '../domain/fleet-remote.js';
import { certificateOf, verifyAuthorization } from '../security/credentials.js';
import { authorizationFromHeader } from '../security/fleet-remote-auth.js';
import { PRIVATE_DIR_MODE } from '../security/files.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

/**
 * The served bare repository, with a pre-receive hook that lets a push only add
 * refs/expctl/commits/<sha> naming <sha>: nothing is moved or deleted, whoever pushes.
 */
export async function prepareServedRepository(dir: string): Promise<void> {
  await fs.mkdir(path.dirname(dir), { recursive: true, mode: PRIVATE_DIR_MODE });
  try {
    await fs.access(path.join(dir, 'HEAD'));
  } catch {
    await execa('git', ['init', '--quiet', '--bare', dir]);
  }
  const settings: [string, string][] = [
    ['receive.denyDeletes', 'true'],
    ['receive.denyNonFastForwards', 'true'],
    ['receive.fsckObjects', 'true'],
    // Workers fetch a commit by SHA when its ref is gone (the hook keeps refs; this is a backstop).
    ['uploadpack.allowAnySHA1InWant', 'true'],
    // Pushes are authorized here, before git sees them (REMOTE_USER is set only then).
    ['http.receivepack', 'true'],
  ];
  for (const [key, value] of settings) await execa('git', ['-C', dir, 'config', key, value]);
  // Written at every start: it names this expctl's node and entry point.
  const hook = `#!/bin/sh\nexec '${process.execPath}' '${EXPCTL}' fleet-remote check-push\n`;
  await fs.writeFile(path.join(dir, 'hooks', 'pre-receive'), hook, { mode: 0o700 });
}

export interface ServedRemote {
  /** What submitting hosts set EXPCTL_FLEET_REMOTE to. */
  url: string;
  dir: string;
  /** Settles when the server stops. */
  closed: Promise<void>;
  stop(): Promise<void>;
}

export interface FleetRemoteOptions {
  dir: string;
  listen: string;
  port: number;
  /** The address other hosts use, where `listen` is 0.0.0.0. */
  advertised?: string;
  /** The fleet's trust root: requests must be signed by a credential it issued. */
  issuer: crypto.KeyObject;
  /** Revoked credentials (the catalog's list, where this host has the catalog). */
  isRevoked?: (certificate: Certificate) => Promise<boolean>;
  /** One line per refused request, for the operator. */
  log?: (line: string) => void;
}

function refuse(response: http.ServerResponse, status: number, message: string): void {
  // git shows a text/plain body of a refused request to its user ("remote: …").
  response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  response.end(`${message}\n`);
}

/** Runs `git http-backend` for one authorized request (CGI: headers, a blank line, the body). */
function serveWithGit(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  root: string,
  url: URL,
  user: string,
): void {
  const backend = execa('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: root,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.replace(/^\?/, ''),
      REQUEST_METHOD: request.method ?? 'GET',
      CONTENT_TYPE: request.headers['content-type'] ?? '',
      REMOTE_USER: user,
      REMOTE_ADDR: request.socket.remoteAddress ?? '',
      ...(request.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: request.headers['content-encoding'] } : {}),
      ...(request.headers['git-protocol'] ? { GIT_PROTOCOL: String(request.headers['git-protocol']) } : {}),
    },
    extendEnv: false,
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
  });
  request.pipe(backend.stdin!);
  let head = Buffer.alloc(0);
  let headersSent = false;
  backend.stdout!.on('data', (chunk: Buffer) => {
    if (headersSent) return void response.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') : head.indexOf('\n\n');
    if (end < 0) return;
    const separator = head.indexOf('\r\n\r\n') === end ? 4 : 2;
    const headers: Record<string, string> = {};
    let status = 200;
    for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
      else headers[name] = value;
    }
    response.writeHead(status, headers);
    headersSent = true;
    response.write(head.subarray(end + separator));
  });
  let stderr = '';
  backend.stderr!.on('data', (chunk: Buffer) => (stderr += String(chunk)));
  void backend.then((result) => {
    if (!headersSent) refuse(response, 500, `git http-backend failed (${result.exitCode}): ${stderr.trim()}`);
    else response.end();
  });
}

/** Serves the fleet remote on `listen`:`port` until stopped; rejects when it cannot listen (the port is taken). */
export async function startFleetRemote(options: FleetRemoteOptions): Promise<ServedRemote> {
  await prepareServedRepository(options.dir);
  const root = path.dirname(options.dir);
  const name = path.basename(options.dir);
  const log = options.log ?? (() => {});
  const server = http.createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://fleet-remote');
      const act = smartGitAction(request.method ?? 'GET', url.pathname, url.searchParams.get('service'));
      if (!act || act.repository !== name)
        return refuse(response, 404, `the fleet remote serves only ${name}, over git's smart HTTP protocol`);
      const authorization = authorizationFromHeader(request.headers.authorization);
      if (!authorization) {
        log(`fleet remote: refused ${act.action} from ${request.socket.remoteAddress}: no credential`);
        // 403, not 401: a 401 makes git ask for a user name and password, which expctl never uses.
        return refuse(
          response,
          403,
          'the fleet remote takes signed requests only: set EXPCTL_FLEET_REMOTE to this expctl+http:// URL ' +
            'and let expctl push and fetch (it signs with your credential)',
        );
      }
      const certificate = certificateOf(authorization);
      const revoked = certificate && options.isRevoked ? await options.isRevoked(certificate) : false;
      const verified = verifyAuthorization(
        options.issuer,
        authorization,
        { action: act.action, target: FLEET_REMOTE_TARGET, digest: '', acceptedAt: new Date() },
        () => revoked,
      );
      const identity = 'identity' in verified ? verified.identity : null;
      if (!identity || !permits(identity, act.action)) {
        const message = deniedMessage(act.action, identity, 'refused' in verified ? verified.refused : undefined);
        log(`fleet remote: ${message}`);
        return refuse(response, 403, message);
      }
      serveWithGit(request, response, root, url, identity.name);
    })().catch((error: Error) => refuse(response, 500, error.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(`could not serve the fleet remote on ${options.listen}:${options.port}: ${error.message}`)),
    );
    server.listen(options.port, options.listen, () => resolve());
  });
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const host = (address: string) => (address.includes(':') ? `[${address}]` : address);
  return {
    url: `expctl+http://${host(options.advertised ?? options.listen)}:${options.port}/${name}`,
    dir: options.dir,
    closed,
    async stop() {
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}
