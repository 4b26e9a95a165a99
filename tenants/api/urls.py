from django.urls import path

from falcon.api import OptionalSlashRouter
from tenants.api import views

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
