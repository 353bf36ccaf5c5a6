"""account security: device rotation and addresses, sign-in limits

Revision ID: 0004_account_security
Revises: 0003_node_identity
Create Date: 2026-12-07 13:30:00

- devices: the client address of the last sign-in or renewal, and the refresh token's
  rotation (previous token hash, when it was rotated, how often the previous was reused);
- sessions.device_id indexed (revoking a device ends its sessions);
- sign_in_failures: wrong codes per email, counted over an hour for the lockout;
- otp_codes.key_id: which OTP key hashed the code (a code from a gateway with another key
  is told apart from a wrong code).

Pending one-time codes hashed the old way (unkeyed) no longer verify after the upgrade;
they expire within minutes and the user asks for a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_account_security'
down_revision = '0003_node_identity'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_address', sa.String(length=200), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('previous_token_hash', sa.String(length=64),
                                      nullable=True))
        batch_op.add_column(sa.Column('rotated_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('previous_reuses', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.create_index(batch_op.f('ix_devices_previous_token_hash'),
                              ['previous_token_hash'], unique=False)
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_device_id'), ['device_id'], unique=False)
    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.String(length=16), nullable=False,
                                      server_default=''))
    op.create_table('sign_in_failures',
                    sa.Column('id', sa.String(length=36), nullable=False),
                    sa.Column('email', sa.String(length=320), nullable=False),
                    sa.Column('at', sa.DateTime(), nullable=False),
                    sa.Column('address', sa.String(length=200), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.create_index('ix_sign_in_failures_email_at', ['email', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_in_failures_email_at')
    op.drop_table('sign_in_failures')
    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.drop_column('key_id')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_device_id'))
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_previous_token_hash'))
        batch_op.drop_column('previous_reuses')
        batch_op.drop_column('rotated_at')
        batch_op.drop_column('previous_token_hash')
        batch_op.drop_column('last_address')
