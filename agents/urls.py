"""The agents app's API routes, one viewset per domain package."""

from django.urls import path

from agents.ecosystem.bundles_api import AgentBundleViewSet
from agents.generator.api import AgentGeneratorViewSet, GenerationViewSet
from agents.notifications.api import NotificationChannelViewSet, NotificationViewSet
from agents.prompts.api import PromptViewSet
from agents.runs.api import AgentRunViewSet, RunViewSet
from agents.triggers.api import TriggerViewSet
from agents.workflows.api import AgentViewSet, VariableViewSet, WorkflowSchemaView
from falcon.api import OptionalSlashRouter

router = OptionalSlashRouter()
# Before AgentViewSet: /agents/generate would otherwise read as the agent "generate".
router.register("agents", AgentGeneratorViewSet, basename="agent-generator")
router.register("agents", AgentBundleViewSet, basename="agent-bundle")  # /agents/import, /agents/{id}/export
router.register("agents", AgentViewSet, basename="agent")
router.register("agents", AgentRunViewSet, basename="agent-run")
router.register("runs", RunViewSet, basename="run")
router.register("generations", GenerationViewSet, basename="generation")
router.register("variables", VariableViewSet, basename="variable")
router.register("triggers", TriggerViewSet, basename="trigger")
router.register("prompts", PromptViewSet, basename="prompt")
router.register("notification-channels", NotificationChannelViewSet, basename="notification-channel")
router.register("notifications", NotificationViewSet, basename="notification")

urlpatterns = [
    path("schemas/workflow.json", WorkflowSchemaView.as_view(), name="workflow-schema"),
    *router.urls,
]
