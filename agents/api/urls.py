from django.urls import path

from agents.api import views
from agents.api.notifications import NotificationChannelViewSet, NotificationViewSet
from agents.api.prompts import PromptViewSet
from falcon.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("agents", views.AgentViewSet, basename="agent")
router.register("runs", views.RunViewSet, basename="run")
router.register("variables", views.VariableViewSet, basename="variable")
router.register("triggers", views.TriggerViewSet, basename="trigger")
router.register("prompts", PromptViewSet, basename="prompt")
router.register("notification-channels", NotificationChannelViewSet, basename="notification-channel")
router.register("notifications", NotificationViewSet, basename="notification")

urlpatterns = [
    path("schemas/workflow.json", views.WorkflowSchemaView.as_view(), name="workflow-schema"),
    *router.urls,
]
