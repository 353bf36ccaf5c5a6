"""stored chunks' size before compression, per node

Revision ID: 0006_node_logical_bytes
Revises: 0005_upload_reservations
Create Date: 2026-12-07 17:10:00

Nodes compress chunks that shrink; ``used_bytes`` stays what their disk holds (capacity
counts it) and ``logical_bytes`` is the same chunks' size before compression, so the admin
status can show the saving.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_node_logical_bytes'
down_revision = '0005_upload_reservations'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('storage_nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('logical_bytes', sa.BigInteger(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('storage_nodes', schema=None) as batch_op:
        batch_op.drop_column('logical_bytes')
