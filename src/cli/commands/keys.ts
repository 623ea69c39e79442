import { initKeyring, listKeys, rotateKeyring } from '../../security/keyring.js';
import { printJson, safeText, wantsJson } from '../output.js';

/** `expctl keys init`: a new payload keyring (0600) for a deployment; refuses to replace one. */
export async function keysInitCommand(options: { json?: boolean }): Promise<void> {
  const { file, keyId } = await initKeyring();
  if (wantsJson(options)) return printJson({ file, current: keyId });
  console.log(`created the payload keyring ${safeText(file)} with key ${keyId}`);
  console.log(
    'Every client and worker of this deployment needs it: copy it to their hosts (mode 0600), or point ' +
      'EXPCTL_KEY_FILE at it, or serve it through EXPCTL_KEY_COMMAND. Keep a backup: without it nothing ' +
      'encrypted with it can be read again.',
  );
}

/** `expctl keys rotate`: a new current key; the old ones stay so that what they encrypted still decrypts. */
export async function keysRotateCommand(options: { json?: boolean }): Promise<void> {
  const { file, keyId, previous } = await rotateKeyring();
  if (wantsJson(options)) return printJson({ file, current: keyId, previous });
  console.log(`added key ${keyId} to ${safeText(file)} and made it current (was ${previous})`);
  console.log(
    'Copy the file to every host that has the old one. Processes already running read the new key when they ' +
      'first meet a payload encrypted with it, and encrypt with it once restarted.',
  );
}

/** `expctl keys list`: the key ids and which one is current; never a key. */
export async function keysListCommand(options: { json?: boolean }): Promise<void> {
  const { source, current, ids } = await listKeys();
  if (wantsJson(options)) return printJson({ source, current, keys: ids });
  console.log(`payload keyring: ${safeText(source)}`);
  for (const id of ids)
    console.log(`${id === current ? '* ' : '  '}${safeText(id)}${id === current ? '  (current)' : ''}`);
}
