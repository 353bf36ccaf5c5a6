"""hard links: further names of a file

Revision ID: 0009_hard_links
Revises: 0008_special_files
Create Date: 2026-12-07 20:30:00

A file row is the inode (content, chunks, attributes) and carries its first name; each
``file_links`` row is one more name (folder, name) of the same file, and ``files.nlink``
counts them all. Every existing file has one name, its own: nlink 1, no link rows, so
every file keeps its id, place, content and shares.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_hard_links'
down_revision = '0008_special_files'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nlink', sa.Integer(), nullable=False,
                                      server_default='1'))
    op.create_table(
        'file_links',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('file_id', sa.String(length=36), nullable=False),
        sa.Column('owner_id', sa.String(length=36), nullable=False),
        sa.Column('folder_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['file_id'], ['files.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['folder_id'], ['folders.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_file_links_file_id', 'file_links', ['file_id'], unique=False)
    op.create_index('ix_file_links_owner_id', 'file_links', ['owner_id'], unique=False)
    op.create_index('uq_file_links_name', 'file_links', ['folder_id', 'name'], unique=True)


def downgrade() -> None:
    # Each further name becomes nothing: the files keep their own names and content.
    op.drop_index('uq_file_links_name', table_name='file_links')
    op.drop_index('ix_file_links_owner_id', table_name='file_links')
    op.drop_index('ix_file_links_file_id', table_name='file_links')
    op.drop_table('file_links')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('nlink')
