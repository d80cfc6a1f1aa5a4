/**
 * Runs an agent call that ends or changes the sandbox's network identity, then tells the proxy
 * (also when it failed: a failed pause may have cut connections too).
 */
export async function releasing<T>(
  deps: { sandboxReleased?: (sandboxId: string) => void },
  id: string,
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await call();
  } finally {
    deps.sandboxReleased?.(id);
  }
}
