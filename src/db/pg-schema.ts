/**
 * The Postgres schema of a deployment (TOLLGATE_PG_SCHEMA): its name, derived from the prefix by
 * default, and the connection setting that puts every query of a pool inside it. Pure functions: the
 * environment parser (src/config/env.ts) and the pool (src/db/client.ts) share them.
 */

/** An unquoted Postgres identifier, lowercase: 1-63 bytes (NAMEDATALEN - 1), no leading digit. */
export const PG_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Schemas a deployment may not own: `public` (every role's default, where tollgate kept its tables
 * before schemas), `drizzle` (that version's migrations journal), Postgres's own.
 */
export function isReservedSchema(name: string): boolean {
  return name === 'public' || name === 'drizzle' || name === 'information_schema' || name.startsWith('pg_');
}

/**
 * The default schema of a prefix: lowercased, every character outside [a-z0-9_] turned into `_`,
 * `tg_` in front of a leading digit or a reserved name, cut to 63 characters. `tollgate` stays
 * `tollgate`; `Acme-prod.eu` becomes `acme_prod_eu`. Prefixes that differ only in case or in
 * punctuation map to one schema: the second deployment is refused at start (TG_ERR_PG_SCHEMA_OWNED)
 * and needs a TOLLGATE_PG_SCHEMA of its own.
 */
export function schemaForPrefix(prefix: string): string {
  let name = prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (name === '' || /^[0-9]/.test(name) || isReservedSchema(name)) name = `tg_${name}`;
  return name.slice(0, 63);
}

/** Why a TOLLGATE_PG_SCHEMA value is refused, or undefined when it is usable. */
export function schemaNameProblem(name: string): string | undefined {
  if (!PG_SCHEMA_PATTERN.test(name)) return 'must be 1-63 characters from [a-z0-9_], not starting with a digit (an unquoted lowercase Postgres identifier)';
  if (isReservedSchema(name)) return `"${name}" is reserved (public, drizzle, information_schema and pg_* cannot hold a deployment)`;
  return undefined;
}

/**
 * Connection settings that put a pool inside `schema`: the search_path travels in the startup packet
 * (`options=-c search_path=...`), so every connection, including one the pool opens after a lost one,
 * has it before its first query, and a RESET or DISCARD ALL returns to it. The search_path is the
 * schema alone: a table missing from it is an error, never a silent read of `public`. An `options`
 * already in the URL is kept, with the schema's search_path after it (the last -c wins).
 */
export function connectionInSchema(url: string, schema: string): { connectionString: string; options: string } {
  if (schemaNameProblem(schema)) throw new Error(`not a usable schema name: ${JSON.stringify(schema)}`);
  const q = url.indexOf('?');
  if (q < 0) return { connectionString: url, options: `-c search_path=${schema}` };
  // pg lets a connection string's parameters override the config's: take `options` out of it.
  const params = new URLSearchParams(url.slice(q + 1));
  const own = params.get('options');
  params.delete('options');
  const rest = params.toString();
  return {
    connectionString: rest ? `${url.slice(0, q)}?${rest}` : url.slice(0, q),
    options: [own, `-c search_path=${schema}`].filter(Boolean).join(' '),
  };
}
