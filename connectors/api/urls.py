from django.urls import path

from connectors.api import views
from falcon.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("connectors", views.ConnectorViewSet, basename="connector")

urlpatterns = [
    path("connector-kinds/", views.ConnectorKindListView.as_view(), name="connector-kinds"),
    *router.urls,
]
