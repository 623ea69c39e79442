/** The commit to run could not be resolved or shipped; the message says why and what to do. */
export class SourceError extends Error {}
