"""Console pages that hold a tenant's data: a reason first, then the data, on the tenant's record.

``BreakGlassAdmin`` pages show an object's metadata to any staff with view rights; its
``payload_fields`` (inputs, outputs, definitions, templates) appear only to members of the Compliance
group who gave a reason for this object (``tenants.staff_access``). Everyone else sees the page
without them, and a note saying why.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from falcon.admin_base import ReadOnlyAdmin, ReadOnlyInline
from falcon.errors import InvalidInput
from tenants.staff_access import ACCESS_MINUTES, is_compliance, staff_access_active, staff_access_grant

OPEN, HIDDEN = "open", "hidden"


def payload_state(request: HttpRequest) -> str:
    return getattr(request, "_falcon_payload", HIDDEN)


class BreakGlassAdmin(ReadOnlyAdmin):
    object_type: ClassVar[str]
    payload_fields: ClassVar[tuple[str, ...]] = ()
    change_form_template = "admin/break_glass_change_form.html"

    def tenant_id_of(self, obj: Any) -> Any:
        return obj.tenant_id

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_permission(request, obj):
            return super().change_view(request, object_id, form_url, extra_context)
        user = request.user
        error = ""
        if request.method == "POST" and not is_compliance(user):
            raise PermissionDenied
        if request.method == "POST":
            try:
                staff_access_grant(
                    request=request,
                    tenant_id=self.tenant_id_of(obj),
                    object_type=self.object_type,
                    object_id=obj.pk,
                    reason=request.POST.get("reason", ""),
                )
                return HttpResponseRedirect(request.path)
            except InvalidInput as refusal:
                error = refusal.message
        grant = staff_access_active(user, self.object_type, obj.pk)
        if is_compliance(user) and grant is None:
            return self._reason_page(request, obj, error)
        request._falcon_payload = OPEN if grant is not None else HIDDEN  # type: ignore[attr-defined]
        context = {
            **(extra_context or {}),
            "payload_note": (
                f"Opened for you until {grant.expires_at:%H:%M} UTC; "
                "this access is in the tenant's audit log."
                if grant is not None
                else "Inputs, outputs and definitions are hidden: only the Compliance group may open them."
            ),
        }
        return super().change_view(request, object_id, form_url, context)

    def _reason_page(self, request: HttpRequest, obj: Any, error: str) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "object": obj,
            "title": f"Open this {self.model._meta.verbose_name}: {obj}",
            "error": error,
            "minutes": ACCESS_MINUTES,
        }
        return TemplateResponse(request, "admin/break_glass.html", context, status=400 if error else 200)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if payload_state(request) != OPEN:
            fields = [f for f in fields if f not in self.payload_fields]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)


class BreakGlassInline(ReadOnlyInline):
    """An inline of a break-glass page: its payload fields follow the page's state."""

    payload_fields: ClassVar[tuple[str, ...]] = ()
    base_fields: ClassVar[tuple[str, ...]] = ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if payload_state(request) == OPEN:
            return [*self.base_fields, *self.payload_fields]
        return list(self.base_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)


__all__ = ["BreakGlassAdmin", "BreakGlassInline", "admin"]
