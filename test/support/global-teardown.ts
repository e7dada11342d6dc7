/** Stops containers that global-setup started (only when Docker had to provide the services). */
export default async function globalTeardown(): Promise<void> {
  const started = (globalThis as Record<string, unknown>).__TOLLGATE_CONTAINERS__ as Array<{ stop(): Promise<unknown> }> | undefined;
  await Promise.all((started ?? []).map((c) => c.stop()));
  const cluster = (globalThis as Record<string, unknown>).__TOLLGATE_CLUSTER__ as { stop(): Promise<void> } | undefined;
  await cluster?.stop();
}
