"""sms part totals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:04:57.716607
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.store.models


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('total', sa.Integer(), nullable=True))
    op.execute("UPDATE sms_parts SET total = COALESCE((SELECT parts FROM sms_outbox "
               "WHERE sms_outbox.id = sms_parts.outbox_id), 1)")
    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.alter_column('total', existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('sms_parts', schema=None) as batch_op:
        batch_op.drop_column('total')

