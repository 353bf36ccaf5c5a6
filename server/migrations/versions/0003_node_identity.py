"""node identity: per-node keys

Revision ID: 0003_node_identity
Revises: 0002_seed_tiers
Create Date: 2026-12-07 13:30:00

Placeholder in the chain; filled by the node-plane security work.
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0003_node_identity'
down_revision = '0002_seed_tiers'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
