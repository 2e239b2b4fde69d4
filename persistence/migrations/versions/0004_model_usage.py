"""Model usage per node execution (task_instances) and summed per run (workflow_runs).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 23:55:46.301699
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("task_instances", sa.Column("model_used", sa.String(length=100), nullable=True))
    op.add_column("task_instances", sa.Column("prompt_tokens", sa.Integer(), nullable=True))
    op.add_column("task_instances", sa.Column("completion_tokens", sa.Integer(), nullable=True))
    op.add_column("task_instances", sa.Column("total_tokens", sa.Integer(), nullable=True))
    op.add_column("task_instances", sa.Column("first_token_time_ms", sa.Integer(), nullable=True))
    op.add_column("workflow_runs", sa.Column("prompt_tokens", sa.Integer(), nullable=True))
    op.add_column("workflow_runs", sa.Column("completion_tokens", sa.Integer(), nullable=True))
    op.add_column("workflow_runs", sa.Column("total_tokens", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("workflow_runs", "total_tokens")
    op.drop_column("workflow_runs", "completion_tokens")
    op.drop_column("workflow_runs", "prompt_tokens")
    op.drop_column("task_instances", "first_token_time_ms")
    op.drop_column("task_instances", "total_tokens")
    op.drop_column("task_instances", "completion_tokens")
    op.drop_column("task_instances", "prompt_tokens")
    op.drop_column("task_instances", "model_used")
