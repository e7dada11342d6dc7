CREATE TABLE "alert_relay" (
	"id" integer PRIMARY KEY DEFAULT 1 NOT NULL,
	"last_event" text DEFAULT '0-0' NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alert_rules" (
	"tenant_id" text PRIMARY KEY NOT NULL,
	"rule" jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_by" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alerts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"source_event" text NOT NULL,
	"alert_key" text NOT NULL,
	"kind" text NOT NULL,
	"tenant_id" text,
	"downstream" text,
	"threshold" double precision,
	"value" double precision NOT NULL,
	"resolved_value" double precision,
	"period" text,
	"window_start" timestamp with time zone,
	"window_end" timestamp with time zone,
	"detail" jsonb NOT NULL,
	"opened_at" timestamp with time zone NOT NULL,
	"resolved_at" timestamp with time zone,
	"acked_at" timestamp with time zone,
	"acked_by" text,
	CONSTRAINT "alerts_source_event" UNIQUE("source_event")
);
--> statement-breakpoint
CREATE TABLE "notifications" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"event_id" text NOT NULL,
	"alert_id" bigint NOT NULL,
	"type" text NOT NULL,
	"target" text NOT NULL,
	"body" jsonb NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"locked_until" timestamp with time zone,
	"locked_by" text,
	"last_error" text,
	"last_status" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone,
	CONSTRAINT "notifications_event_target" UNIQUE("event_id","target")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "alerts_open_key" ON "alerts" USING btree ("alert_key") WHERE "alerts"."resolved_at" IS NULL;--> statement-breakpoint
CREATE INDEX "alerts_tenant" ON "alerts" USING btree ("tenant_id","id");--> statement-breakpoint
CREATE INDEX "alerts_kind" ON "alerts" USING btree ("kind","id");--> statement-breakpoint
CREATE INDEX "notifications_due" ON "notifications" USING btree ("state","next_attempt_at");--> statement-breakpoint
CREATE INDEX "notifications_alert" ON "notifications" USING btree ("alert_id");