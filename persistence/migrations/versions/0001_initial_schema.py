"""Initial schema: every table of the data model's sections 1-5.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 21:43:34.245472
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "permissions",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("resource", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("is_system", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_permissions")),
        sa.UniqueConstraint("name", name=op.f("uq_permissions_name")),
    )
    op.create_index(op.f("ix_permissions_resource"), "permissions", ["resource"], unique=False)
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=50), server_default="active", nullable=False),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("plan_id", sa.UUID(), nullable=True),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("domain", name=op.f("uq_tenants_domain")),
    )
    op.create_index(op.f("ix_tenants_status"), "tenants", ["status"], unique=False)
    op.create_table(
        "roles",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("is_system", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_roles_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.UniqueConstraint("name", "tenant_id", name=op.f("uq_roles_name_tenant_id")),
    )
    op.create_index(op.f("ix_roles_tenant_id"), "roles", ["tenant_id"], unique=False)
    op.create_table(
        "users",
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("full_name", sa.String(length=255), nullable=True),
        sa.Column("hashed_password", sa.String(length=255), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("is_superuser", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("last_login", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("preferences", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("avatar_url", sa.String(length=255), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_users_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_index(op.f("ix_users_tenant_id"), "users", ["tenant_id"], unique=False)
    # tenants.owner_id and users.tenant_id point at each other: close the cycle now.
    op.create_foreign_key(
        op.f("fk_tenants_owner_id_users"),
        "tenants",
        "users",
        ["owner_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_table(
        "role_permissions",
        sa.Column("role_id", sa.UUID(), nullable=False),
        sa.Column("permission_id", sa.UUID(), nullable=False),
        sa.Column(
            "granted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("granted_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["granted_by"],
            ["users.id"],
            name=op.f("fk_role_permissions_granted_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["permission_id"],
            ["permissions.id"],
            name=op.f("fk_role_permissions_permission_id_permissions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_role_permissions_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("role_id", "permission_id", name=op.f("pk_role_permissions")),
    )
    op.create_index(
        op.f("ix_role_permissions_permission_id"),
        "role_permissions",
        ["permission_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_role_permissions_role_id"), "role_permissions", ["role_id"], unique=False
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("role_id", sa.UUID(), nullable=False),
        sa.Column(
            "assigned_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("assigned_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["assigned_by"],
            ["users.id"],
            name=op.f("fk_user_roles_assigned_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"], ["roles.id"], name=op.f("fk_user_roles_role_id_roles"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_roles_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "role_id", name=op.f("pk_user_roles")),
    )
    op.create_index(op.f("ix_user_roles_role_id"), "user_roles", ["role_id"], unique=False)
    op.create_index(op.f("ix_user_roles_user_id"), "user_roles", ["user_id"], unique=False)
    op.create_table(
        "workspaces",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("icon", sa.String(length=255), nullable=True),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_workspaces_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workspaces_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("name", "tenant_id", name=op.f("uq_workspaces_name_tenant_id")),
    )
    op.create_index(op.f("ix_workspaces_tenant_id"), "workspaces", ["tenant_id"], unique=False)
    op.create_table(
        "agents",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column(
            "configuration",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("version", sa.String(length=50), nullable=True),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("workspace_id", sa.UUID(), nullable=True),
        sa.Column("visibility", sa.String(length=50), server_default="private", nullable=False),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("documentation", sa.Text(), nullable=True),
        sa.Column("license", sa.String(length=100), nullable=True),
        sa.Column("repository_url", sa.String(length=255), nullable=True),
        sa.Column("input_schema", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("output_schema", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "modalities",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "type IS NULL OR type IN ('docker', 'api', 'a2a', 'llm', 'vision', 'audio', 'sensor', 'workflow')",
            name=op.f("ck_agents_type"),
        ),
        sa.CheckConstraint(
            "visibility IS NULL OR visibility IN ('private', 'workspace', 'tenant', 'public')",
            name=op.f("ck_agents_visibility"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_agents_owner_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_agents_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_agents_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    op.create_index(op.f("ix_agents_created_at"), "agents", ["created_at"], unique=False)
    op.create_index(
        "ix_agents_modalities_gin",
        "agents",
        ["modalities"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"modalities": "jsonb_path_ops"},
    )
    op.create_index(op.f("ix_agents_name_tenant_id"), "agents", ["name", "tenant_id"], unique=False)
    op.create_index(op.f("ix_agents_owner_id"), "agents", ["owner_id"], unique=False)
    op.create_index(
        "ix_agents_tags_gin",
        "agents",
        ["tags"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.create_index(op.f("ix_agents_tenant_id"), "agents", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_agents_type"), "agents", ["type"], unique=False)
    op.create_index(op.f("ix_agents_visibility"), "agents", ["visibility"], unique=False)
    op.create_index(op.f("ix_agents_workspace_id"), "agents", ["workspace_id"], unique=False)
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status", sa.String(length=50), server_default="draft", nullable=False),
        sa.Column("creator_id", sa.UUID(), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("workspace_id", sa.UUID(), nullable=True),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_template", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("orchestrator_id", sa.String(length=255), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('draft', 'published', 'archived')",
            name=op.f("ck_workflows_status"),
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"],
            ["users.id"],
            name=op.f("fk_workflows_creator_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workflows_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflows_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
    )
    op.create_index(op.f("ix_workflows_created_at"), "workflows", ["created_at"], unique=False)
    op.create_index(op.f("ix_workflows_creator_id"), "workflows", ["creator_id"], unique=False)
    op.create_index(
        op.f("ix_workflows_name_tenant_id"), "workflows", ["name", "tenant_id"], unique=False
    )
    op.create_index(op.f("ix_workflows_status"), "workflows", ["status"], unique=False)
    op.create_index(
        "ix_workflows_tags_gin",
        "workflows",
        ["tags"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.create_index(op.f("ix_workflows_tenant_id"), "workflows", ["tenant_id"], unique=False)
    op.create_index(op.f("ix_workflows_workspace_id"), "workflows", ["workspace_id"], unique=False)
    op.create_table(
        "workspace_members",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(length=50), server_default="member", nullable=False),
        sa.Column(
            "joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("invited_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["users.id"],
            name=op.f("fk_workspace_members_invited_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_workspace_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_members_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "user_id", name=op.f("pk_workspace_members")),
    )
    op.create_index(op.f("ix_workspace_members_role"), "workspace_members", ["role"], unique=False)
    op.create_index(
        op.f("ix_workspace_members_user_id"), "workspace_members", ["user_id"], unique=False
    )
    op.create_index(
        op.f("ix_workspace_members_workspace_id"),
        "workspace_members",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "agent_dependencies",
        sa.Column("dependent_agent_id", sa.UUID(), nullable=False),
        sa.Column("dependency_agent_id", sa.UUID(), nullable=False),
        sa.Column("dependency_version", sa.String(length=50), nullable=True),
        sa.Column("dependency_type", sa.String(length=50), server_default="agent", nullable=False),
        sa.Column("optional", sa.Boolean(), server_default="false", nullable=False),
        sa.CheckConstraint(
            "dependency_type IS NULL OR dependency_type IN ('agent', 'model', 'library')",
            name=op.f("ck_agent_dependencies_dependency_type"),
        ),
        sa.ForeignKeyConstraint(
            ["dependency_agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_dependencies_dependency_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dependent_agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_dependencies_dependent_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "dependent_agent_id", "dependency_agent_id", name=op.f("pk_agent_dependencies")
        ),
    )
    op.create_index(
        op.f("ix_agent_dependencies_dependency_agent_id"),
        "agent_dependencies",
        ["dependency_agent_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_agent_dependencies_dependent_agent_id"),
        "agent_dependencies",
        ["dependent_agent_id"],
        unique=False,
    )
    op.create_table(
        "agent_versions",
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column(
            "configuration",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("changelog", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=50), server_default="published", nullable=False),
        sa.Column("input_schema", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("output_schema", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('draft', 'published', 'deprecated')",
            name=op.f("ck_agent_versions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_versions_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_agent_versions_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_versions")),
        sa.UniqueConstraint("agent_id", "version", name=op.f("uq_agent_versions_agent_id_version")),
    )
    op.create_index(
        op.f("ix_agent_versions_agent_id"), "agent_versions", ["agent_id"], unique=False
    )
    op.create_index(
        op.f("ix_agent_versions_created_at"), "agent_versions", ["created_at"], unique=False
    )
    op.create_index(op.f("ix_agent_versions_status"), "agent_versions", ["status"], unique=False)
    op.create_table(
        "workflow_runs",
        sa.Column("workflow_id", sa.UUID(), nullable=True),
        sa.Column("workflow_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=50), server_default="queued", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inputs", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("outputs", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("triggered_by", sa.UUID(), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("workspace_id", sa.UUID(), nullable=True),
        sa.Column("orchestrator_run_id", sa.String(length=255), nullable=False),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("parent_run_id", sa.UUID(), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('queued', 'running', 'waiting_hitl', 'paused', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_workflow_runs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_workflow_runs_parent_run_id_workflow_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workflow_runs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["triggered_by"],
            ["users.id"],
            name=op.f("fk_workflow_runs_triggered_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_runs_workflow_id_workflows"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_runs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_runs")),
        sa.UniqueConstraint(
            "orchestrator_run_id", name=op.f("uq_workflow_runs_orchestrator_run_id")
        ),
    )
    op.create_index(
        op.f("ix_workflow_runs_parent_run_id"), "workflow_runs", ["parent_run_id"], unique=False
    )
    op.create_index(
        op.f("ix_workflow_runs_started_at"), "workflow_runs", ["started_at"], unique=False
    )
    op.create_index(op.f("ix_workflow_runs_status"), "workflow_runs", ["status"], unique=False)
    op.create_index(
        "ix_workflow_runs_tags_gin",
        "workflow_runs",
        ["tags"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.create_index(
        op.f("ix_workflow_runs_tenant_id"), "workflow_runs", ["tenant_id"], unique=False
    )
    op.create_index(
        op.f("ix_workflow_runs_triggered_by"), "workflow_runs", ["triggered_by"], unique=False
    )
    op.create_index(
        op.f("ix_workflow_runs_workflow_id"), "workflow_runs", ["workflow_id"], unique=False
    )
    op.create_index(
        op.f("ix_workflow_runs_workspace_id"), "workflow_runs", ["workspace_id"], unique=False
    )
    op.create_table(
        "workflow_versions",
        sa.Column("workflow_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=50), server_default="published", nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('draft', 'published')",
            name=op.f("ck_workflow_versions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_workflow_versions_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_versions_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint(
            "workflow_id", "version", name=op.f("uq_workflow_versions_workflow_id_version")
        ),
    )
    op.create_index(
        op.f("ix_workflow_versions_created_at"), "workflow_versions", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_workflow_versions_workflow_id"), "workflow_versions", ["workflow_id"], unique=False
    )
    op.create_table(
        "task_instances",
        sa.Column("workflow_run_id", sa.UUID(), nullable=False),
        sa.Column("node_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=50), server_default="queued", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inputs", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("outputs", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("orchestrator_task_id", sa.String(length=255), nullable=False),
        sa.Column("agent_type", sa.String(length=100), nullable=True),
        sa.Column("agent_config", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'paused', 'skipped')",
            name=op.f("ck_task_instances_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_task_instances_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_task_instances_workflow_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_instances")),
        sa.UniqueConstraint(
            "workflow_run_id",
            "orchestrator_task_id",
            name=op.f("uq_task_instances_workflow_run_id_orchestrator_task_id"),
        ),
    )
    op.create_index(
        op.f("ix_task_instances_agent_type"), "task_instances", ["agent_type"], unique=False
    )
    op.create_index(
        op.f("ix_task_instances_started_at"), "task_instances", ["started_at"], unique=False
    )
    op.create_index(op.f("ix_task_instances_status"), "task_instances", ["status"], unique=False)
    op.create_index(
        op.f("ix_task_instances_tenant_id"), "task_instances", ["tenant_id"], unique=False
    )
    op.create_index(
        op.f("ix_task_instances_workflow_run_id"),
        "task_instances",
        ["workflow_run_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_task_instances_workflow_run_id_node_id"),
        "task_instances",
        ["workflow_run_id", "node_id"],
        unique=False,
    )
    op.create_table(
        "hitl_tasks",
        sa.Column("workflow_run_id", sa.UUID(), nullable=False),
        sa.Column("task_instance_id", sa.UUID(), nullable=True),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=50), server_default="pending", nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assignee_id", sa.UUID(), nullable=True),
        sa.Column("assignee_role", sa.String(length=100), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("workspace_id", sa.UUID(), nullable=True),
        sa.Column("context", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("decision_type", sa.String(length=50), nullable=False),
        sa.Column("decision_options", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("escalation_path", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "decision_type IS NULL OR decision_type IN ('approval', 'choice', 'form_input', 'annotation', 'free_text')",
            name=op.f("ck_hitl_tasks_decision_type"),
        ),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('pending', 'assigned', 'in_progress', 'completed', 'escalated', 'expired', 'cancelled')",
            name=op.f("ck_hitl_tasks_status"),
        ),
        sa.CheckConstraint(
            "priority IS NULL OR priority BETWEEN 1 AND 5", name=op.f("ck_hitl_tasks_priority")
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
            name=op.f("fk_hitl_tasks_assignee_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["task_instance_id"],
            ["task_instances.id"],
            name=op.f("fk_hitl_tasks_task_instance_id_task_instances"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_hitl_tasks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_hitl_tasks_workflow_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_hitl_tasks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hitl_tasks")),
    )
    op.create_index(op.f("ix_hitl_tasks_assignee_id"), "hitl_tasks", ["assignee_id"], unique=False)
    op.create_index(
        op.f("ix_hitl_tasks_assignee_role"), "hitl_tasks", ["assignee_role"], unique=False
    )
    op.create_index(op.f("ix_hitl_tasks_created_at"), "hitl_tasks", ["created_at"], unique=False)
    op.create_index(op.f("ix_hitl_tasks_deadline"), "hitl_tasks", ["deadline"], unique=False)
    op.create_index(op.f("ix_hitl_tasks_priority"), "hitl_tasks", ["priority"], unique=False)
    op.create_index(op.f("ix_hitl_tasks_status"), "hitl_tasks", ["status"], unique=False)
    op.create_index(
        op.f("ix_hitl_tasks_task_instance_id"), "hitl_tasks", ["task_instance_id"], unique=False
    )
    op.create_index(op.f("ix_hitl_tasks_tenant_id"), "hitl_tasks", ["tenant_id"], unique=False)
    op.create_index(
        op.f("ix_hitl_tasks_workflow_run_id"), "hitl_tasks", ["workflow_run_id"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_tasks_workspace_id"), "hitl_tasks", ["workspace_id"], unique=False
    )
    op.create_table(
        "hitl_decisions",
        sa.Column("hitl_task_id", sa.UUID(), nullable=False),
        sa.Column("decision", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("decision_type", sa.String(length=50), nullable=False),
        sa.Column(
            "decided_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_by", sa.UUID(), nullable=True),
        sa.Column("comments", sa.Text(), nullable=True),
        sa.Column("attachments", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint(
            "decision_type IS NULL OR decision_type IN ('approval', 'choice', 'form_input', 'annotation', 'free_text')",
            name=op.f("ck_hitl_decisions_decision_type"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
            name=op.f("fk_hitl_decisions_decided_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["hitl_task_id"],
            ["hitl_tasks.id"],
            name=op.f("fk_hitl_decisions_hitl_task_id_hitl_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_hitl_decisions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hitl_decisions")),
    )
    op.create_index(
        op.f("ix_hitl_decisions_decided_at"), "hitl_decisions", ["decided_at"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_decisions_decided_by"), "hitl_decisions", ["decided_by"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_decisions_hitl_task_id"), "hitl_decisions", ["hitl_task_id"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_decisions_tenant_id"), "hitl_decisions", ["tenant_id"], unique=False
    )
    op.create_table(
        "hitl_escalations",
        sa.Column("hitl_task_id", sa.UUID(), nullable=False),
        sa.Column(
            "escalated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("escalated_by", sa.UUID(), nullable=True),
        sa.Column("escalated_to", sa.UUID(), nullable=True),
        sa.Column("escalated_to_role", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=50), server_default="pending", nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=True),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.CheckConstraint(
            "status IS NULL OR status IN ('pending', 'acknowledged', 'resolved', 'rejected')",
            name=op.f("ck_hitl_escalations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["escalated_by"],
            ["users.id"],
            name=op.f("fk_hitl_escalations_escalated_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["escalated_to"],
            ["users.id"],
            name=op.f("fk_hitl_escalations_escalated_to_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["hitl_task_id"],
            ["hitl_tasks.id"],
            name=op.f("fk_hitl_escalations_hitl_task_id_hitl_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_hitl_escalations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hitl_escalations")),
    )
    op.create_index(
        op.f("ix_hitl_escalations_escalated_by"), "hitl_escalations", ["escalated_by"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_escalations_escalated_to"), "hitl_escalations", ["escalated_to"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_escalations_escalated_to_role"),
        "hitl_escalations",
        ["escalated_to_role"],
        unique=False,
    )
    op.create_index(
        op.f("ix_hitl_escalations_hitl_task_id"), "hitl_escalations", ["hitl_task_id"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_escalations_status"), "hitl_escalations", ["status"], unique=False
    )
    op.create_index(
        op.f("ix_hitl_escalations_tenant_id"), "hitl_escalations", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_tenants_owner_id_users"), "tenants", type_="foreignkey")
    op.drop_index(op.f("ix_hitl_escalations_tenant_id"), table_name="hitl_escalations")
    op.drop_index(op.f("ix_hitl_escalations_status"), table_name="hitl_escalations")
    op.drop_index(op.f("ix_hitl_escalations_hitl_task_id"), table_name="hitl_escalations")
    op.drop_index(op.f("ix_hitl_escalations_escalated_to_role"), table_name="hitl_escalations")
    op.drop_index(op.f("ix_hitl_escalations_escalated_to"), table_name="hitl_escalations")
    op.drop_index(op.f("ix_hitl_escalations_escalated_by"), table_name="hitl_escalations")
    op.drop_table("hitl_escalations")
    op.drop_index(op.f("ix_hitl_decisions_tenant_id"), table_name="hitl_decisions")
    op.drop_index(op.f("ix_hitl_decisions_hitl_task_id"), table_name="hitl_decisions")
    op.drop_index(op.f("ix_hitl_decisions_decided_by"), table_name="hitl_decisions")
    op.drop_index(op.f("ix_hitl_decisions_decided_at"), table_name="hitl_decisions")
    op.drop_table("hitl_decisions")
    op.drop_index(op.f("ix_hitl_tasks_workspace_id"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_workflow_run_id"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_tenant_id"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_task_instance_id"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_status"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_priority"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_deadline"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_created_at"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_assignee_role"), table_name="hitl_tasks")
    op.drop_index(op.f("ix_hitl_tasks_assignee_id"), table_name="hitl_tasks")
    op.drop_table("hitl_tasks")
    op.drop_index(op.f("ix_task_instances_workflow_run_id_node_id"), table_name="task_instances")
    op.drop_index(op.f("ix_task_instances_workflow_run_id"), table_name="task_instances")
    op.drop_index(op.f("ix_task_instances_tenant_id"), table_name="task_instances")
    op.drop_index(op.f("ix_task_instances_status"), table_name="task_instances")
    op.drop_index(op.f("ix_task_instances_started_at"), table_name="task_instances")
    op.drop_index(op.f("ix_task_instances_agent_type"), table_name="task_instances")
    op.drop_table("task_instances")
    op.drop_index(op.f("ix_workflow_versions_workflow_id"), table_name="workflow_versions")
    op.drop_index(op.f("ix_workflow_versions_created_at"), table_name="workflow_versions")
    op.drop_table("workflow_versions")
    op.drop_index(op.f("ix_workflow_runs_workspace_id"), table_name="workflow_runs")
    op.drop_index(op.f("ix_workflow_runs_workflow_id"), table_name="workflow_runs")
    op.drop_index(op.f("ix_workflow_runs_triggered_by"), table_name="workflow_runs")
    op.drop_index(op.f("ix_workflow_runs_tenant_id"), table_name="workflow_runs")
    op.drop_index(
        "ix_workflow_runs_tags_gin",
        table_name="workflow_runs",
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.drop_index(op.f("ix_workflow_runs_status"), table_name="workflow_runs")
    op.drop_index(op.f("ix_workflow_runs_started_at"), table_name="workflow_runs")
    op.drop_index(op.f("ix_workflow_runs_parent_run_id"), table_name="workflow_runs")
    op.drop_table("workflow_runs")
    op.drop_index(op.f("ix_agent_versions_status"), table_name="agent_versions")
    op.drop_index(op.f("ix_agent_versions_created_at"), table_name="agent_versions")
    op.drop_index(op.f("ix_agent_versions_agent_id"), table_name="agent_versions")
    op.drop_table("agent_versions")
    op.drop_index(op.f("ix_agent_dependencies_dependent_agent_id"), table_name="agent_dependencies")
    op.drop_index(
        op.f("ix_agent_dependencies_dependency_agent_id"), table_name="agent_dependencies"
    )
    op.drop_table("agent_dependencies")
    op.drop_index(op.f("ix_workspace_members_workspace_id"), table_name="workspace_members")
    op.drop_index(op.f("ix_workspace_members_user_id"), table_name="workspace_members")
    op.drop_index(op.f("ix_workspace_members_role"), table_name="workspace_members")
    op.drop_table("workspace_members")
    op.drop_index(op.f("ix_workflows_workspace_id"), table_name="workflows")
    op.drop_index(op.f("ix_workflows_tenant_id"), table_name="workflows")
    op.drop_index(
        "ix_workflows_tags_gin",
        table_name="workflows",
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.drop_index(op.f("ix_workflows_status"), table_name="workflows")
    op.drop_index(op.f("ix_workflows_name_tenant_id"), table_name="workflows")
    op.drop_index(op.f("ix_workflows_creator_id"), table_name="workflows")
    op.drop_index(op.f("ix_workflows_created_at"), table_name="workflows")
    op.drop_table("workflows")
    op.drop_index(op.f("ix_agents_workspace_id"), table_name="agents")
    op.drop_index(op.f("ix_agents_visibility"), table_name="agents")
    op.drop_index(op.f("ix_agents_type"), table_name="agents")
    op.drop_index(op.f("ix_agents_tenant_id"), table_name="agents")
    op.drop_index(
        "ix_agents_tags_gin",
        table_name="agents",
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    )
    op.drop_index(op.f("ix_agents_owner_id"), table_name="agents")
    op.drop_index(op.f("ix_agents_name_tenant_id"), table_name="agents")
    op.drop_index(
        "ix_agents_modalities_gin",
        table_name="agents",
        postgresql_using="gin",
        postgresql_ops={"modalities": "jsonb_path_ops"},
    )
    op.drop_index(op.f("ix_agents_created_at"), table_name="agents")
    op.drop_table("agents")
    op.drop_index(op.f("ix_workspaces_tenant_id"), table_name="workspaces")
    op.drop_table("workspaces")
    op.drop_index(op.f("ix_user_roles_user_id"), table_name="user_roles")
    op.drop_index(op.f("ix_user_roles_role_id"), table_name="user_roles")
    op.drop_table("user_roles")
    op.drop_index(op.f("ix_role_permissions_role_id"), table_name="role_permissions")
    op.drop_index(op.f("ix_role_permissions_permission_id"), table_name="role_permissions")
    op.drop_table("role_permissions")
    op.drop_index(op.f("ix_users_tenant_id"), table_name="users")
    op.drop_table("users")
    op.drop_index(op.f("ix_roles_tenant_id"), table_name="roles")
    op.drop_table("roles")
    op.drop_index(op.f("ix_tenants_status"), table_name="tenants")
    op.drop_table("tenants")
    op.drop_index(op.f("ix_permissions_resource"), table_name="permissions")
    op.drop_table("permissions")
