"""sms parts and relay

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:08:28.105102
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.store.models


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sms_parts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('outbox_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('part', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('message_id', sa.String(length=65), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.String(length=64), nullable=True),
    sa.Column('submitted_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('done_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.Column('queried_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.Column('queries', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['outbox_id'], ['sms_outbox.id'], name=op.f('fk_sms_parts_outbox_id_sms_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_parts')),
    sa.UniqueConstraint('provider', 'message_id', name=op.f('uq_sms_parts_provider'))
    )
    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_parts_outbox_id'), ['outbox_id'], unique=False)
        batch_op.create_index('ix_sms_parts_status_submitted', ['status', 'submitted_at'], unique=False)

    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('relay_ref', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('parts', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.drop_column('parts')
        batch_op.drop_column('relay_ref')

    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_parts_status_submitted')
        batch_op.drop_index(batch_op.f('ix_sms_parts_outbox_id'))

    op.drop_table('sms_parts')
