"""bytes moved per gateway and minute, for the admin status's speeds

Revision ID: 0007_traffic_minutes
Revises: 0006_node_logical_bytes
Create Date: 2026-12-07 17:10:00

Each gateway adds the bytes it received and sent to its row for the current minute, so the
admin status can tell the cluster's upload and download speeds over the last minutes
whichever gateway answers it. Old rows are pruned.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_traffic_minutes'
down_revision = '0006_node_logical_bytes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('traffic_minutes',
    sa.Column('gateway_id', sa.String(length=64), nullable=False),
    sa.Column('minute', sa.BigInteger(), nullable=False),
    sa.Column('bytes_in', sa.BigInteger(), nullable=False, server_default='0'),
    sa.Column('bytes_out', sa.BigInteger(), nullable=False, server_default='0'),
    sa.PrimaryKeyConstraint('gateway_id', 'minute')
    )
    with op.batch_alter_table('traffic_minutes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_traffic_minutes_minute'), ['minute'], unique=False)


def downgrade() -> None:
    op.drop_table('traffic_minutes')
