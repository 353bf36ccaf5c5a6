"""node identity: per-node keys

Revision ID: 0003_node_identity
Revises: 0002_seed_tiers
Create Date: 2026-12-07 13:30:00

Each storage node gets a key at the first registration of its name; the gateway keeps only
its SHA-256 here. Nodes registered before this revision have none (NULL) and are issued one
at their next registration (trust on first use).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_node_identity'
down_revision = '0002_seed_tiers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("storage_nodes") as batch:
        batch.add_column(sa.Column("key_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("storage_nodes") as batch:
        batch.drop_column("key_hash")
