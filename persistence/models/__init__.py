"""Every table of CONTRACT section 3 and the model registry, importable from one place."""

from persistence.models.agents import Agent, AgentDependency, AgentVersion
from persistence.models.hitl import HitlDecision, HitlEscalation, HitlTask
from persistence.models.identity import Permission, Role, RolePermission, User, UserRole
from persistence.models.multimodal import AudioModel, SensorModel, VisionModel
from persistence.models.secrets import TenantSecret
from persistence.models.tenancy import Tenant, Workspace, WorkspaceMember
from persistence.models.workflows import TaskInstance, Workflow, WorkflowRun, WorkflowVersion

__all__ = [
    "Agent",
    "AgentDependency",
    "AgentVersion",
    "AudioModel",
    "HitlDecision",
    "HitlEscalation",
    "HitlTask",
    "Permission",
    "Role",
    "RolePermission",
    "SensorModel",
    "TaskInstance",
    "Tenant",
    "TenantSecret",
    "User",
    "UserRole",
    "VisionModel",
    "Workflow",
    "WorkflowRun",
    "WorkflowVersion",
    "Workspace",
    "WorkspaceMember",
]
