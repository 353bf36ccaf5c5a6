"""account security: device rotation and addresses, sign-in limits

Revision ID: 0004_account_security
Revises: 0003_node_identity
Create Date: 2026-12-07 13:30:00

Placeholder in the chain; filled by the account security work.
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0004_account_security'
down_revision = '0003_node_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
