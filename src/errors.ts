/** A mistake in how Switchyard was called or configured: the CLI prints the message and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A problem with the environment (Redis unreachable, file unreadable) that stops a run before it starts. */
export class SetupError extends Error {
  override name = 'SetupError';
}
