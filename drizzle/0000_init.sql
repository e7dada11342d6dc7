CREATE TABLE "downstream_counters" (
	"downstream" text PRIMARY KEY NOT NULL,
	"counters" jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
