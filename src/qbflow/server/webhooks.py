"""POST /webhooks/intuit: Intuit's change notifications, verified, turned into immediate polls."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
