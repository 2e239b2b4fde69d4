"""Every table of CONTRACT section 3, importable from one place (Alembic reads this)."""

from persistence.models.agents import Agent, AgentDependency, AgentVersion
from persistence.models.hitl import HitlDecision, HitlEscalation, HitlTask
from persistence.models.identity import Permission, Role, RolePermission, User, UserRole
from persistence.models.tenancy import Tenant, Workspace, WorkspaceMember
from persistence.models.workflows import TaskInstance, Workflow, WorkflowRun, WorkflowVersion

__all__ = [
    "Agent",
    "AgentDependency",
    "AgentVersion",
    "HitlDecision",
    "HitlEscalation",
    "HitlTask",
    "Permission",
    "Role",
    "RolePermission",
    "TaskInstance",
    "Tenant",
    "User",
    "UserRole",
    "Workflow",
    "WorkflowRun",
    "WorkflowVersion",
    "Workspace",
    "WorkspaceMember",
]
