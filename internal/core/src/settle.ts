/**
 * Like `Promise.all`, but every task settles before the first failure is rethrown: a caller that
 * undoes on failure must not start while a sibling task is still creating what it would undo.
 */
export async function allSucceeded(tasks: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}
