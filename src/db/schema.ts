/**
 * Postgres schema (drizzle-orm). Postgres holds the durable truth; Redis the live state.
 * Migrations in drizzle/ are generated from this file by `npm run db:generate` (drizzle-kit).
 */
import { jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

/** Snapshot of each downstream's decision and outcome counters, written by the observer. */
export const downstreamCounters = pgTable('downstream_counters', {
  downstream: text('downstream').primaryKey(),
  /** Counter name → value, as kept in Redis (`admitted`, `completed`, `failed`, `dead:<reason>`...). */
  counters: jsonb('counters').$type<Record<string, number>>().notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});
