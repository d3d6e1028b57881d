"""connections: one row per authorized QuickBooks Online company.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("realm_id", sa.String(64), nullable=False),
        sa.Column("company_name", sa.String(255), nullable=True),
        sa.Column("environment", sa.String(20), nullable=False),
        sa.Column("api_base", sa.String(500), nullable=False),
        sa.Column("token_endpoint", sa.String(500), nullable=False),
        sa.Column("revocation_endpoint", sa.String(500), nullable=True),
        sa.Column("discovery_url", sa.String(500), nullable=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("client_secret_enc", sa.Text(), nullable=False),
        sa.Column("access_token_enc", sa.Text(), nullable=False),
        sa.Column("refresh_token_enc", sa.Text(), nullable=False),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=True),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'needs_reconnect')", name=op.f("ck_connections_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
        sa.UniqueConstraint("name", name=op.f("uq_connections_name")),
    )
    op.create_index(op.f("ix_connections_realm_id"), "connections", ["realm_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_connections_realm_id"), table_name="connections")
    op.drop_table("connections")
