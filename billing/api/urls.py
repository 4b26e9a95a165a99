from django.urls import path

from billing.api import views

urlpatterns = [
    path("usage", views.UsageViewSet.as_view({"get": "retrieve"}), name="usage"),
    path(
        "billing/subscription",
        views.BillingViewSet.as_view({"get": "subscription"}),
        name="billing-subscription",
    ),
    path("billing/checkout", views.BillingViewSet.as_view({"post": "checkout"}), name="billing-checkout"),
    path("billing/portal", views.BillingViewSet.as_view({"post": "portal"}), name="billing-portal"),
    path(
        "billing/spend-cap",
        views.BillingViewSet.as_view({"get": "spend_cap", "put": "spend_cap_set"}),
        name="billing-spend-cap",
    ),
]
