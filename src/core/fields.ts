/**
 * Flat field lists as Redis returns them (a stream entry's fields, an XINFO reply: name, value, name,
 * value …) as an object. Pure; a trailing name without a value is dropped.
 */
export function fieldsOf<V>(flat: readonly V[]): Record<string, V> {
  const out: Record<string, V> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1] as V;
  return out;
}
