from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.overview_page, name="dashboard-overview"),
    path("agents/", views.agents_page, name="dashboard-agents"),
    path("agents/<uuid:agent_id>/", views.agent_page, name="dashboard-agent"),
    path("runs/", views.runs_page, name="dashboard-runs"),
    path("runs/<uuid:run_id>/", views.run_page, name="dashboard-run"),
    path("runs/<uuid:run_id>/<str:what>", views.run_action, name="dashboard-run-action"),
    path("switch", views.switch_tenant, name="dashboard-switch"),
]
