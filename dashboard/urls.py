from django.urls import path

from dashboard import (
    views,
    views_build,
    views_bundles,
    views_connect,
    views_generate,
    views_org,
    views_prompts,
)

urlpatterns = [
    path("", views.overview_page, name="dashboard-overview"),
    path("agents/", views.agents_page, name="dashboard-agents"),
    path("agents/templates/", views_build.gallery_page, name="dashboard-gallery"),
    path("agents/new/", views_build.new_agent_page, name="dashboard-agent-new"),
    path("agents/import/", views_bundles.agent_import_page, name="dashboard-agent-import"),
    path("agents/describe/", views_generate.describe_page, name="dashboard-describe"),
    path("generations/<uuid:generation_id>/", views_generate.generation_page, name="dashboard-generation"),
    path(
        "generations/<uuid:generation_id>/accept",
        views_generate.generation_accept,
        name="dashboard-generation-accept",
    ),
    path("agents/<uuid:agent_id>/refine", views_generate.agent_refine, name="dashboard-agent-refine"),
    path("agents/<uuid:agent_id>/", views.agent_page, name="dashboard-agent"),
    path("agents/<uuid:agent_id>/build/", views_build.builder_page, name="dashboard-agent-build"),
    path("agents/<uuid:agent_id>/export", views_bundles.agent_export, name="dashboard-agent-export"),
    path("agents/<uuid:agent_id>/diff/", views_build.diff_page, name="dashboard-agent-diff"),
    path(
        "agents/<uuid:agent_id>/versions/<int:number>/publish",
        views_build.publish_version,
        name="dashboard-agent-publish",
    ),
    path("agents/<uuid:agent_id>/rights", views_build.agent_rights, name="dashboard-agent-rights"),
    path("agents/<uuid:agent_id>/watchers", views_build.agent_watchers, name="dashboard-agent-watchers"),
    path("runs/", views.runs_page, name="dashboard-runs"),
    path("runs/<uuid:run_id>/", views.run_page, name="dashboard-run"),
    path("runs/<uuid:run_id>/<str:what>", views.run_action, name="dashboard-run-action"),
    path("connectors/", views_connect.connectors_page, name="dashboard-connectors"),
    path("connectors/new/", views_connect.connector_new_page, name="dashboard-connector-new"),
    path("connectors/<uuid:connector_id>/", views_connect.connector_page, name="dashboard-connector"),
    path("triggers/", views_connect.triggers_page, name="dashboard-triggers"),
    path("triggers/<uuid:trigger_id>/", views_connect.trigger_page, name="dashboard-trigger"),
    path(
        "triggers/<uuid:trigger_id>/<str:what>", views_connect.trigger_action, name="dashboard-trigger-action"
    ),
    path("prompts/", views_prompts.prompts_page, name="dashboard-prompts"),
    path("prompts/<uuid:prompt_id>/", views_prompts.prompt_page, name="dashboard-prompt"),
    path("usage/", views_org.usage_page, name="dashboard-usage"),
    path("usage/<str:what>", views_org.billing_action, name="dashboard-billing"),
    path("organization/members/", views_org.members_page, name="dashboard-members"),
    path("organization/keys/", views_org.keys_page, name="dashboard-keys"),
    path("organization/settings/", views_org.settings_page, name="dashboard-settings"),
    path("organization/new/", views_org.organization_new_page, name="dashboard-organization-new"),
    path("audit/", views_org.audit_page, name="dashboard-audit"),
    path("switch", views.switch_tenant, name="dashboard-switch"),
]
