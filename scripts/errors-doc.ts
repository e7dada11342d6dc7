/**
 * Rewrites the table of docs/errors.md from src/errors.ts (`npm run docs:errors`); the prose above
 * the table is kept. test/unit/errors.test.ts fails when the two differ.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS } from '../src/errors';

const file = join(__dirname, '..', 'docs', 'errors.md');
const text = readFileSync(file, 'utf8');
const head = text.slice(0, text.indexOf('| code | status |'));
const rows = Object.entries(ERRORS).map(
  ([code, spec]) => `| \`${code}\` | ${spec.status} | ${'reason' in spec ? `\`${spec.reason}\`` : ''} | ${spec.doc} |`,
);
writeFileSync(file, `${head}| code | status | dead-letter reason | when |\n|---|---|---|---|\n${rows.join('\n')}\n`);
process.stdout.write(`wrote ${file}\n`);
