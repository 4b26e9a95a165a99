from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.api import views


class OptionalSlashRouter(SimpleRouter):
    """Routes that answer with or without the trailing slash (no redirect that drops a POST body)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("members", views.MemberViewSet, basename="member")
router.register("invitations", views.InvitationViewSet, basename="invitation")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")

urlpatterns = [
    path(
        "tenant",
        views.CurrentTenantViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="tenant-current",
    ),
    path("tenants/", views.TenantListView.as_view(), name="tenant-list"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    *router.urls,
]
