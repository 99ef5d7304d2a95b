"""sms leases

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:26:30.081414
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.store.models


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', gateway.store.models.UTCDateTime(), nullable=True))

    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_sms_parts_provider'), type_='unique')
        batch_op.create_index('ix_sms_parts_provider_message_id', ['provider', 'message_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_parts_provider_message_id')
        batch_op.create_unique_constraint(batch_op.f('uq_sms_parts_provider'), ['provider', 'message_id'])

    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.drop_column('lease_until')

