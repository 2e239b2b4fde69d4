"""Row-level security: a session that sets app.tenant_id sees only that tenant's rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The worker connects as the tables' owner, which RLS does not restrict (it
writes every tenant's runs). The platform's API and the reviewers' inbox
connect as another role and run `SET app.tenant_id = '<uuid>'` (or
`set_config('app.tenant_id', ..., true)` per transaction); without it they see
nothing. Tables that carry no tenant_id follow the row they belong to.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# An empty or unset app.tenant_id yields NULL, which matches no row.
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

#: table -> the predicate a visible (and writable) row satisfies.
POLICIES: dict[str, str] = {
    "tenants": f"id = {CURRENT_TENANT}",
    "users": f"tenant_id = {CURRENT_TENANT}",
    "roles": f"tenant_id = {CURRENT_TENANT}",
    "workspaces": f"tenant_id = {CURRENT_TENANT}",
    "workflows": f"tenant_id = {CURRENT_TENANT}",
    "workflow_runs": f"tenant_id = {CURRENT_TENANT}",
    "task_instances": f"tenant_id = {CURRENT_TENANT}",
    "hitl_tasks": f"tenant_id = {CURRENT_TENANT}",
    "hitl_decisions": f"tenant_id = {CURRENT_TENANT}",
    "hitl_escalations": f"tenant_id = {CURRENT_TENANT}",
    "agents": f"tenant_id = {CURRENT_TENANT}",
    "workflow_versions": (
        "EXISTS (SELECT 1 FROM workflows w WHERE w.id = workflow_id "
        f"AND w.tenant_id = {CURRENT_TENANT})"
    ),
    "agent_versions": (
        f"EXISTS (SELECT 1 FROM agents a WHERE a.id = agent_id AND a.tenant_id = {CURRENT_TENANT})"
    ),
    "workspace_members": (
        "EXISTS (SELECT 1 FROM workspaces w WHERE w.id = workspace_id "
        f"AND w.tenant_id = {CURRENT_TENANT})"
    ),
    "agent_dependencies": (
        "EXISTS (SELECT 1 FROM agents a WHERE a.id = dependent_agent_id "
        f"AND a.tenant_id = {CURRENT_TENANT})"
    ),
    "user_roles": (
        f"EXISTS (SELECT 1 FROM roles r WHERE r.id = role_id AND r.tenant_id = {CURRENT_TENANT})"
    ),
}


def upgrade() -> None:
    for table, predicate in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING ({predicate}) WITH CHECK ({predicate})"
        )


def downgrade() -> None:
    for table in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
