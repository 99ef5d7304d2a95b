"""dashboard indexes

The operator dashboard counts the orders and SMS of a time window: index both by created_at.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_orders_created', 'orders', ['created_at'], unique=False)
    op.create_index('ix_sms_outbox_created', 'sms_outbox', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sms_outbox_created', table_name='sms_outbox')
    op.drop_index('ix_orders_created', table_name='orders')
