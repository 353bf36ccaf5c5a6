"""seed the default storage tiers (starter 250 MB ... premium 2 GB, prices in XAF)

Revision ID: 0002_seed_tiers
Revises: 0001
Create Date: 2026-11-25 08:00:00

Tiers are data an admin edits afterwards (AdminService.UpsertTier); this only adds the
defaults that are missing, by name, and never overwrites an edited tier.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0002_seed_tiers'
down_revision = '0001'
branch_labels = None
depends_on = None

MiB = 1024 * 1024
_NS = uuid.UUID("6f1c2a8e-3b7d-4c1e-9a52-0d4e8b7f2c11")

DEFAULT_TIERS = [
    # name, display name, bytes, price (XAF), description
    ("starter", "Starter Pack", 250 * MiB, 500, "Perfect for light users: add 250 MB"),
    ("basic", "Basic Pack", 500 * MiB, 900, "Photos and documents: add 500 MB"),
    ("standard", "Standard Pack", 1024 * MiB, 1500, "For regular users: add 1 GB"),
    ("premium", "Premium Pack", 2048 * MiB, 2500, "For heavy users: add 2 GB"),
]

tiers = sa.table(
    "storage_tiers",
    sa.column("id", sa.String), sa.column("name", sa.String),
    sa.column("display_name", sa.String), sa.column("storage_bytes", sa.BigInteger),
    sa.column("price_xaf", sa.Integer), sa.column("description", sa.String),
    sa.column("active", sa.Boolean), sa.column("sort_order", sa.Integer),
)


def upgrade() -> None:
    conn = op.get_bind()
    existing = {row[0] for row in conn.execute(sa.select(tiers.c.name))}
    rows = [
        {"id": str(uuid.uuid5(_NS, name)), "name": name, "display_name": display,
         "storage_bytes": size, "price_xaf": price, "description": description,
         "active": True, "sort_order": (i + 1) * 10}
        for i, (name, display, size, price, description) in enumerate(DEFAULT_TIERS)
        if name not in existing
    ]
    if rows:
        op.bulk_insert(tiers, rows)


def downgrade() -> None:
    conn = op.get_bind()
    payments = sa.table("payments", sa.column("tier_id", sa.String))
    used = {row[0] for row in conn.execute(sa.select(payments.c.tier_id).distinct())}
    for name, *_ in DEFAULT_TIERS:
        tier_id = str(uuid.uuid5(_NS, name))
        if tier_id not in used:
            conn.execute(tiers.delete().where(tiers.c.id == tier_id))
