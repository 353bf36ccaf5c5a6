"""special files: a device entry's number

Revision ID: 0008_special_files
Revises: 0007_traffic_minutes
Create Date: 2026-12-07 18:00:00

A mount stores FIFOs, unix sockets and character and block devices as entries (mknod):
their type rides in the mode's file-type bits (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK; the
``mode`` column is wide enough), and ``rdev`` is a device's number. Existing rows are
regular files and symlinks with no device number: 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_special_files'
down_revision = '0007_traffic_minutes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rdev', sa.BigInteger(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('rdev')
