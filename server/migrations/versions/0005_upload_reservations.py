"""quota reservations for uploads in progress

Revision ID: 0005_upload_reservations
Revises: 0004_account_security
Create Date: 2026-12-07 13:30:00

Uploads in progress hold quota from their first stored chunk (``upload_reservations``,
shared by every gateway, with an expiry so a dead gateway's uploads stop counting), and
chunks an aborted upload left on the nodes keep counting until collected or reused
(``parked_chunks``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_upload_reservations'
down_revision = '0004_account_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('upload_reservations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('credit', sa.BigInteger(), nullable=False),
    sa.Column('replaces_file_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('upload_reservations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload_reservations_user_id'), ['user_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_upload_reservations_expires_at'), ['expires_at'],
                              unique=False)
    op.create_table('parked_chunks',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('chunk_sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('parked_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['chunk_sha256'], ['chunks.sha256'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'chunk_sha256')
    )
    with op.batch_alter_table('parked_chunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_parked_chunks_chunk_sha256'), ['chunk_sha256'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('parked_chunks')
    op.drop_table('upload_reservations')
