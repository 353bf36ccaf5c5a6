"""the name table: every name of a file in file_names, the files row is the inode only

Revision ID: 0010_name_table
Revises: 0009_hard_links
Create Date: 2026-12-07 23:00:00

Before: a ``files`` row was the inode and carried its first name (``folder_id``, ``name``;
``original_folder_id`` in the trash) and ``file_links`` held its further names. After: each
name is one ``file_names`` row (file, owner, folder, name, created_at, and ``deleted_at``
on the one name a trashed file keeps for its restore), and ``files`` keeps content,
attributes, nlink and trash state only.

Upgrade: each file's own name becomes a name row with the file's id and created_at (a
trashed file's keeps its folder, its name and the time it went to the trash), each
``file_links`` row of a live file becomes a name row with its own id; then
``file_links`` and the moved columns go. Downgrade: a file's oldest name goes back into
its row, every other live name into ``file_links``.

SQLite rebuilds ``files`` to drop or add columns (batch mode), and dropping the old table
would cascade into its children (chunk lists, shares, names) since the gateway runs with
foreign keys on, which cannot be turned off inside the migration's transaction. So their
rows are set aside in temporary tables around the rebuild and put back after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = '0010_name_table'
down_revision = '0009_hard_links'
branch_labels = None
depends_on = None

_LIVE = sa.text('deleted_at IS NULL')


@contextmanager
def _files_rebuilt(children: tuple[str, ...]) -> Iterator[None]:
    """Around a SQLite batch rebuild of ``files``: the rows of ``children`` (tables with a
    cascading foreign key to it) are kept aside and put back. Nothing to do elsewhere."""
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        yield
        return
    for table in children:
        op.execute(f'CREATE TEMP TABLE keep_{table} AS SELECT * FROM {table}')
    yield
    for table in children:
        op.execute(f'DELETE FROM {table}')
        op.execute(f'INSERT INTO {table} SELECT * FROM keep_{table}')
        op.execute(f'DROP TABLE keep_{table}')


def upgrade() -> None:
    op.create_table(
        'file_names',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('file_id', sa.String(length=36), nullable=False),
        sa.Column('owner_id', sa.String(length=36), nullable=False),
        sa.Column('folder_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('deleted_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['file_id'], ['files.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['folder_id'], ['folders.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_file_names_file_id', 'file_names', ['file_id'], unique=False)
    op.create_index('ix_file_names_owner_id', 'file_names', ['owner_id'], unique=False)
    op.create_index('ix_file_names_folder_id', 'file_names', ['folder_id'], unique=False)
    op.create_index('uq_file_names_live', 'file_names', ['folder_id', 'name'], unique=True,
                    sqlite_where=_LIVE, postgresql_where=_LIVE)
    op.execute(
        'INSERT INTO file_names (id, file_id, owner_id, folder_id, name, created_at, deleted_at)'
        ' SELECT id, id, owner_id, folder_id, name, created_at, deleted_at FROM files')
    # A trashed file's further names went with it (0009 drops them); any left are not kept.
    op.execute(
        'INSERT INTO file_names (id, file_id, owner_id, folder_id, name, created_at, deleted_at)'
        ' SELECT l.id, l.file_id, l.owner_id, l.folder_id, l.name, l.created_at, NULL'
        ' FROM file_links l JOIN files f ON f.id = l.file_id WHERE f.deleted_at IS NULL')
    op.execute(
        'UPDATE files SET nlink = (SELECT count(*) FROM file_names n WHERE n.file_id = files.id)'
        ' WHERE deleted_at IS NULL')
    op.execute('UPDATE files SET nlink = 1 WHERE deleted_at IS NOT NULL')
    op.drop_index('uq_file_links_name', table_name='file_links')
    op.drop_index('ix_file_links_owner_id', table_name='file_links')
    op.drop_index('ix_file_links_file_id', table_name='file_links')
    op.drop_table('file_links')
    with _files_rebuilt(('file_chunks', 'shares', 'file_names')):
        with op.batch_alter_table('files', schema=None) as batch_op:
            batch_op.drop_index('uq_files_live_name', sqlite_where=_LIVE, postgresql_where=_LIVE)
            batch_op.drop_index('ix_files_folder_id')
            batch_op.drop_column('original_folder_id')
            batch_op.drop_column('name')
            batch_op.drop_column('folder_id')


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('folder_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('name', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('original_folder_id', sa.String(length=36),
                                      nullable=True))
    first = ('(SELECT n.{col} FROM file_names n WHERE n.file_id = files.id'
             ' ORDER BY n.created_at, n.id LIMIT 1)')
    op.execute(f'UPDATE files SET folder_id = {first.format(col="folder_id")},'
               f' name = {first.format(col="name")}')
    op.execute('UPDATE files SET original_folder_id = folder_id WHERE deleted_at IS NOT NULL')
    op.execute('DELETE FROM files WHERE folder_id IS NULL')  # no name: unreachable in 0009
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
    op.execute(
        'INSERT INTO file_links (id, file_id, owner_id, folder_id, name, created_at)'
        ' SELECT n.id, n.file_id, n.owner_id, n.folder_id, n.name, n.created_at'
        ' FROM file_names n JOIN files f ON f.id = n.file_id'
        ' WHERE n.deleted_at IS NULL AND f.deleted_at IS NULL'
        ' AND NOT (n.folder_id = f.folder_id AND n.name = f.name)')
    op.execute(
        'UPDATE files SET nlink = 1 + (SELECT count(*) FROM file_links l'
        ' WHERE l.file_id = files.id)')
    op.drop_index('uq_file_names_live', table_name='file_names',
                  sqlite_where=_LIVE, postgresql_where=_LIVE)
    op.drop_index('ix_file_names_folder_id', table_name='file_names')
    op.drop_index('ix_file_names_owner_id', table_name='file_names')
    op.drop_index('ix_file_names_file_id', table_name='file_names')
    op.drop_table('file_names')
    with _files_rebuilt(('file_chunks', 'shares', 'file_links')):
        with op.batch_alter_table('files', schema=None) as batch_op:
            batch_op.alter_column('folder_id', existing_type=sa.String(length=36),
                                  nullable=False)
            batch_op.alter_column('name', existing_type=sa.String(length=255), nullable=False)
            batch_op.create_foreign_key('files_folder_id_fkey', 'folders', ['folder_id'],
                                        ['id'], ondelete='CASCADE')
            batch_op.create_index('ix_files_folder_id', ['folder_id'], unique=False)
            batch_op.create_index('uq_files_live_name', ['folder_id', 'name'], unique=True,
                                  sqlite_where=_LIVE, postgresql_where=_LIVE)
