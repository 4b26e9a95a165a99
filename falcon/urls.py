"""URL map: the REST API under /api/v1/, its schema and docs, accounts (allauth), the admin console."""

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents.ecosystem import mcp_server, openai_api
from agents.triggers.webhooks import email_receive_http, webhook_receive
from billing.webhooks import stripe_webhook
from dashboard import views as dashboard_views
from falcon import views
from falcon.api import unknown_api_path
from tenants import views as tenant_views

# The compliance console signs in through allauth, so MFA applies to it like everywhere else.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "Falcon compliance console"
admin.site.site_title = "Falcon"

urlpatterns = [
    path("", include("dashboard.urls")),
    path("favicon.ico", dashboard_views.favicon, name="favicon"),
    path("account/", tenant_views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("invitations/accept", tenant_views.invitation_accept_page, name="invitation-accept-page"),
    path("hooks/email/<str:public_id>", email_receive_http, name="webhook-email"),
    path("hooks/<str:public_id>", webhook_receive, name="webhook"),
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("agents.urls")),
    path("api/v1/", include("connectors.api.urls")),
    path("api/v1/", include("billing.api.urls")),
    path("api/openai/v1/models", openai_api.ModelsView.as_view(), name="openai-models"),
    path("api/openai/v1/chat/completions", openai_api.ChatCompletionsView.as_view(), name="openai-chat"),
    path("api/mcp", mcp_server.mcp_view, name="mcp"),
    path("billing/stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-docs"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    # Unknown API paths answer in the API's error shape, in debug mode too.
    re_path(r"^(api|hooks|billing)/", unknown_api_path),
]

handler400 = "falcon.api.handler400"
handler403 = "falcon.api.handler403"
handler404 = "falcon.api.handler404"
handler500 = "falcon.api.handler500"
