import fs from 'node:fs';
import path from 'node:path';
import { inject } from 'vitest';

// Every test process, and every `expctl` it starts, encrypts payloads with the run's own keyring
// (made by global-setup.ts), never with one of the environment's.
process.env.EXPCTL_KEY_FILE = inject('keyFile');
delete process.env.EXPCTL_KEY_COMMAND;
// So do they seal --secret values for, and open them with, the run's own worker key pair.
Object.assign(process.env, inject('sealKeyFiles'));

// Nor does any of them find a stack through the user's own pointer (~/.local/state/expctl): each
// test file has a state home of its own, where an `expctl dev` it starts records its stack.
process.env.XDG_STATE_HOME = fs.mkdtempSync(path.join(inject('stateHomes'), 'file-'));
// And a fleet store of its own: runs ship their logs (and more) to it, never to the checkout's .expctl.
process.env.EXPCTL_STORE = fs.mkdtempSync(path.join(inject('stateHomes'), 'store-'));
