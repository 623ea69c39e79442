import { inject } from 'vitest';

// Every test process, and every `expctl` it starts, encrypts payloads with the run's own keyring
// (made by global-setup.ts), never with one of the environment's.
process.env.EXPCTL_KEY_FILE = inject('keyFile');
delete process.env.EXPCTL_KEY_COMMAND;
