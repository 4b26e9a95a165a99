"""django-allauth hooks: every new sign-up gets a personal tenant it owns."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction
from django.http import HttpRequest

from tenants.audit import Actor
from tenants.models import AuditEvent, User
from tenants.services import tenant_create_personal


class FalconAccountAdapter(DefaultAccountAdapter):
    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        with transaction.atomic():
            saved = super().save_user(request, user, form, commit=commit)
            if commit and isinstance(saved, User):
                actor = Actor(
                    type=AuditEvent.ActorType.USER,
                    id=str(saved.pk),
                    label=saved.email,
                    ip=request.META.get("REMOTE_ADDR"),
                    user_agent=request.META.get("HTTP_USER_AGENT", ""),
                    request_id=getattr(request, "request_id", ""),
                )
                tenant_create_personal(user=saved, actor=actor)
        return saved
