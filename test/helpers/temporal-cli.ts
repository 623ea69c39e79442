import { execa } from 'execa';
import { inject } from 'vitest';

/**
 * The real Temporal CLI against one stack's namespace, as an operator (or anyone who reaches the
 * server's port) runs it; `identity` is what it tells the server. Never rejects: the caller reads
 * the exit code, and `pid` names the process (the server records it in a CLI client's identity).
 */
export function temporalCli(stack: { address: string; namespace: string }, args: string[], identity?: string) {
  return execa(
    inject('temporalCli'),
    [
      ...args,
      '--address',
      stack.address,
      '--namespace',
      stack.namespace,
      ...(identity ? ['--identity', identity] : []),
    ],
    { reject: false, all: true },
  );
}
