CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"tenant_id" text,
	"before" jsonb,
	"after" jsonb,
	"reason" text NOT NULL,
	"ticket" text
);
--> statement-breakpoint
CREATE TABLE "definitions_version" (
	"id" integer PRIMARY KEY DEFAULT 1 NOT NULL,
	"version" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "quotas" (
	"id" serial PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"job_type" text,
	"downstream" text,
	"rate" double precision,
	"burst" integer,
	"max_concurrent" integer,
	"per_hour" bigint,
	"per_day" bigint,
	"per_month" bigint,
	"on_period_exceeded" text DEFAULT 'wait' NOT NULL,
	"paused" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "quotas_scope" UNIQUE NULLS NOT DISTINCT("tenant_id","job_type","downstream")
);
--> statement-breakpoint
CREATE TABLE "throttles" (
	"id" serial PRIMARY KEY NOT NULL,
	"tenant_id" text,
	"job_type" text,
	"action" text NOT NULL,
	"rate" double precision,
	"burst" integer,
	"until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_ledger" (
	"quota_id" text NOT NULL,
	"tenant_id" text NOT NULL,
	"period" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"used" bigint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_ledger_quota_id_tenant_id_period_window_start_pk" PRIMARY KEY("quota_id","tenant_id","period","window_start")
);
--> statement-breakpoint
CREATE INDEX "audit_log_resource" ON "audit_log" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "audit_log_at" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE INDEX "quotas_tenant" ON "quotas" USING btree ("tenant_id");