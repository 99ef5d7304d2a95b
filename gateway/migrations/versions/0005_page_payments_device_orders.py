"""page payments, device orders

Orders may be phone-less renewals or recharges shown as QR codes (a recharge names no
package); an order records the account that paid it; wallets count wrong page passwords.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:32:23.027922
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.store.models


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paid_from', sa.String(length=80), nullable=True))
        batch_op.alter_column('package_id',
               existing_type=sa.VARCHAR(length=64),
               nullable=True)
        batch_op.create_check_constraint(
            'kind_known', "kind IN ('package', 'renewal', 'recharge')")
        batch_op.create_check_constraint(
            'package_unless_recharge', "(kind = 'recharge') = (package_id IS NULL)")

    with op.batch_alter_table('wallets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('web_failed_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('web_locked_until', gateway.store.models.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('wallets', schema=None) as batch_op:
        batch_op.drop_column('web_locked_until')
        batch_op.drop_column('web_failed_attempts')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('package_unless_recharge', type_='check')
        batch_op.drop_constraint('kind_known', type_='check')
        batch_op.alter_column('package_id',
               existing_type=sa.VARCHAR(length=64),
               nullable=False)
        batch_op.drop_column('paid_from')

