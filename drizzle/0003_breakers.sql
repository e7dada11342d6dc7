CREATE TABLE "breaker_snapshots" (
	"downstream" text PRIMARY KEY NOT NULL,
	"state" jsonb NOT NULL,
	"gen" bigint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "breaker_transitions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"downstream" text NOT NULL,
	"from_state" text NOT NULL,
	"to_state" text NOT NULL,
	"reason" text NOT NULL,
	"counters" jsonb NOT NULL,
	"gen" bigint NOT NULL,
	"actor" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"open_until" timestamp with time zone,
	CONSTRAINT "breaker_transitions_gen" UNIQUE("downstream","gen")
);
--> statement-breakpoint
CREATE INDEX "breaker_transitions_at" ON "breaker_transitions" USING btree ("downstream","at");