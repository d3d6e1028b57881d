"""The JSON API under /api (OpenAPI at /docs): connections, workflows, runs. Every route needs the API token."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from qbflow.server.auth import require_api_token

router = APIRouter(prefix="/api", dependencies=[Depends(require_api_token)])
