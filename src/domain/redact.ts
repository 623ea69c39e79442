/** Secrets never reach the operating record. Pure: used by activities before anything is stored. */

const SECRET_NAME = /(token|key|secret|password|passwd|credential|auth|cookie|session|private)/i;
export const REDACTED = '[redacted]';

export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

/** Environment variables with the values of secret-looking names replaced. */
export function redactEnv(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env)
      .filter((entry): entry is [string, string] => entry[1] !== undefined)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, value]) => [name, isSecretName(name) ? REDACTED : value]),
  );
}

/** The values to scrub from free text (logs): those of secret-looking names, 4+ characters long. */
export function secretValues(env: Record<string, string | undefined>): string[] {
  return Object.entries(env)
    .filter(([name, value]) => isSecretName(name) && value !== undefined && value.length >= 4)
    .map(([, value]) => value as string)
    .sort((a, b) => b.length - a.length);
}

export function scrubText(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join(REDACTED);
  return out;
}
