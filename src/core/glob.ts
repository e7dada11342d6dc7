/**
 * Job-name globs for routing rules and quotas: `*` matches any run of characters (dots included),
 * `?` matches exactly one, everything else matches itself. Compiled once to an anchored RegExp.
 */
export function compileGlob(glob: string): RegExp {
  let src = '';
  for (const ch of glob) {
    if (ch === '*') src += '.*';
    else if (ch === '?') src += '.';
    else src += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${src}$`, 's');
}

/** Specificity for "most specific wins": literal characters count, wildcards do not. */
export function globSpecificity(glob: string): number {
  let n = 0;
  for (const ch of glob) if (ch !== '*' && ch !== '?') n++;
  return n;
}
