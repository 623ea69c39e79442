/**
 * This process lacks what it needs to act on the fleet: a credential, keyring or issuer key that
 * is missing, unreadable, not private to its owner, malformed, or not this fleet's. The CLI reports
 * it as a refusal (`permission_denied`, exit 6), never as an error of expctl itself.
 */
export class AccessError extends Error {}
