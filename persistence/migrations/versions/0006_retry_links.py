"""Retries that reuse recorded outputs: the run a retry retries, the row a node reused.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 09:00:00.000000

`workflow_runs.retry_of_run_id` points a retry at the run it retries, so both stay visible
and linked; `task_instances.reused_from` marks a node execution that took the retried run's
recorded output instead of running, and names that row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workflow_runs", sa.Column("retry_of_run_id", sa.UUID(), nullable=True))
    op.create_index(op.f("ix_workflow_runs_retry_of_run_id"), "workflow_runs", ["retry_of_run_id"])
    op.create_foreign_key(
        op.f("fk_workflow_runs_retry_of_run_id_workflow_runs"),
        "workflow_runs",
        "workflow_runs",
        ["retry_of_run_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("task_instances", sa.Column("reused_from", sa.UUID(), nullable=True))


def downgrade() -> None:
    op.drop_column("task_instances", "reused_from")
    op.drop_constraint(
        op.f("fk_workflow_runs_retry_of_run_id_workflow_runs"), "workflow_runs", type_="foreignkey"
    )
    op.drop_index(op.f("ix_workflow_runs_retry_of_run_id"), table_name="workflow_runs")
    op.drop_column("workflow_runs", "retry_of_run_id")
