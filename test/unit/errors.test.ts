import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS } from '../../src/errors';

const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'errors.md'), 'utf8');

describe('error registry and docs/errors.md', () => {
  it('documents every code with its status and reason', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      const line = doc.split('\n').find((l) => l.startsWith(`| \`${code}\``));
      expect({ code, line }).toEqual({ code, line: expect.any(String) });
      expect(line).toContain(`| ${spec.status} |`);
      if ('reason' in spec) expect(line).toContain(`\`${spec.reason}\``);
    }
  });

  it('documents no code that does not exist', () => {
    const documented = [...doc.matchAll(/^\| `(TG_ERR_[A-Z_]+)`/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(ERRORS).sort());
  });
});
