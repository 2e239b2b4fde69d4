"""Runs that start themselves: a flow's triggers and lifecycle, a run's trigger and progress.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 09:00:00.000000

`workflows` gains what the platform's reference gives for flows that start runs on their own
(`triggers`, `schedule_cron`, `schedule_timezone`) and for switching a flow off without
archiving it (`is_active`, `is_paused`), and `last_run_at`. `workflow_runs` gains what
started the run (`trigger_type`, checked like the status columns, and `trigger_metadata`)
and its progress, kept current by the write-back (`current_step`, `completed_steps`) and
written at its end (`execution_time_ms`, `error_step`, `error_code`). The reference's run
column `triggered_by` (a kind) is `trigger_type` here: our `triggered_by` stays a user id.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "workflows",
        sa.Column(
            "triggers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("workflows", sa.Column("schedule_cron", sa.String(length=100), nullable=True))
    op.add_column(
        "workflows",
        sa.Column("schedule_timezone", sa.String(length=50), server_default="UTC", nullable=True),
    )
    op.add_column(
        "workflows", sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False)
    )
    op.add_column(
        "workflows", sa.Column("is_paused", sa.Boolean(), server_default="false", nullable=False)
    )
    op.add_column("workflows", sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_workflows_triggers_gin",
        "workflows",
        ["triggers"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"triggers": "jsonb_path_ops"},
    )
    op.add_column(
        "workflow_runs",
        sa.Column("trigger_type", sa.String(length=50), server_default="manual", nullable=True),
    )
    op.add_column(
        "workflow_runs",
        sa.Column(
            "trigger_metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
    )
    op.add_column("workflow_runs", sa.Column("current_step", sa.String(length=255), nullable=True))
    op.add_column(
        "workflow_runs",
        sa.Column(
            "completed_steps",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=True,
        ),
    )
    op.add_column("workflow_runs", sa.Column("error_step", sa.String(length=255), nullable=True))
    op.add_column("workflow_runs", sa.Column("execution_time_ms", sa.Integer(), nullable=True))
    op.add_column("workflow_runs", sa.Column("error_code", sa.String(length=50), nullable=True))
    op.create_check_constraint(
        op.f("ck_workflow_runs_trigger_type"),
        "workflow_runs",
        "trigger_type IS NULL OR trigger_type IN ('manual', 'schedule', 'webhook', 'event')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_workflow_runs_trigger_type"), "workflow_runs", type_="check")
    for column in (
        "error_code",
        "execution_time_ms",
        "error_step",
        "completed_steps",
        "current_step",
        "trigger_metadata",
        "trigger_type",
    ):
        op.drop_column("workflow_runs", column)
    op.drop_index("ix_workflows_triggers_gin", table_name="workflows")
    for column in (
        "last_run_at",
        "is_paused",
        "is_active",
        "schedule_timezone",
        "schedule_cron",
        "triggers",
    ):
        op.drop_column("workflows", column)
