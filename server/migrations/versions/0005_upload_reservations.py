"""quota reservations for uploads in progress

Revision ID: 0005_upload_reservations
Revises: 0004_account_security
Create Date: 2026-12-07 13:30:00

Placeholder in the chain; filled by the quota work.
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0005_upload_reservations'
down_revision = '0004_account_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
