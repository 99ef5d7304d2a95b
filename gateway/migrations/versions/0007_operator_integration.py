"""operator integration

BOSS events to post, phone pairings and their codes, operators' bills paid by orders of kind
bill, retries linked to the order they retry, and order_events widened into everything a TV is
shown (device_id, type, data; not only order status changes).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 14:16:18.664604
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.store.models


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('boss_events',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('lease_until', gateway.store.models.UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('delivered_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_boss_events'))
    )
    with op.batch_alter_table('boss_events', schema=None) as batch_op:
        batch_op.create_index('ix_boss_events_status_next', ['status', 'next_attempt_at'], unique=False)

    op.create_table('bills',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=120), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('paid_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('outstanding', 'paid')", name=op.f('ck_bills_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_bills_amount_positive')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_bills_device_id_devices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bills'))
    )
    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bills_device_id'), ['device_id'], unique=False)

    op.create_table('pairing_codes',
    sa.Column('code', sa.String(length=8), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('used_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('confirm_hash', sa.String(length=64), nullable=True),
    sa.Column('confirm_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_pairing_codes_device_id_devices')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_pairing_codes'))
    )
    with op.batch_alter_table('pairing_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pairing_codes_device_id'), ['device_id'], unique=False)

    op.create_table('pairings',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_pairings_device_id_devices')),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_pairings'))
    )
    with op.batch_alter_table('pairings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pairings_phone'), ['phone'], unique=False)

    op.add_column('order_events', sa.Column('device_id', sa.String(length=64), nullable=True))
    op.execute("UPDATE order_events SET device_id = "
               "(SELECT orders.device_id FROM orders WHERE orders.id = order_events.order_id)")
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.alter_column('device_id', existing_type=sa.String(length=64), nullable=False)
        batch_op.add_column(sa.Column('type', sa.String(length=32), server_default='order.status', nullable=False))
        batch_op.add_column(sa.Column('data', sa.Text(), nullable=True))
        batch_op.alter_column('order_id',
               existing_type=sa.VARCHAR(length=32),
               nullable=True)
        batch_op.alter_column('status',
               existing_type=sa.VARCHAR(length=16),
               nullable=True)
        batch_op.create_index('ix_order_events_device_id_id', ['device_id', 'id'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bill_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('retry_of', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_orders_bill_id'), ['bill_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_orders_retry_of'), ['retry_of'])
        batch_op.create_foreign_key(batch_op.f('fk_orders_bill_id_bills'), 'bills', ['bill_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_orders_retry_of_orders'), 'orders', ['retry_of'], ['id'])
        batch_op.drop_constraint('package_unless_recharge', type_='check')
        batch_op.drop_constraint('kind_known', type_='check')
        batch_op.create_check_constraint(
            'kind_known', "kind IN ('package', 'renewal', 'recharge', 'bill')")
        batch_op.create_check_constraint(
            'package_for_package_kinds', "(kind IN ('package', 'renewal')) = (package_id IS NOT NULL)")
        batch_op.create_check_constraint('bill_for_bill_kind', "(kind = 'bill') = (bill_id IS NOT NULL)")



def downgrade() -> None:
    op.execute("DELETE FROM order_events WHERE order_id IS NULL")
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint('bill_for_bill_kind', type_='check')
        batch_op.drop_constraint('package_for_package_kinds', type_='check')
        batch_op.drop_constraint('kind_known', type_='check')
        batch_op.create_check_constraint(
            'kind_known', "kind IN ('package', 'renewal', 'recharge')")
        batch_op.create_check_constraint(
            'package_unless_recharge', "(kind = 'recharge') = (package_id IS NULL)")
        batch_op.drop_constraint(batch_op.f('fk_orders_retry_of_orders'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_orders_bill_id_bills'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_orders_retry_of'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_orders_bill_id'))
        batch_op.drop_column('retry_of')
        batch_op.drop_column('bill_id')

    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.drop_index('ix_order_events_device_id_id')
        batch_op.alter_column('status',
               existing_type=sa.VARCHAR(length=16),
               nullable=False)
        batch_op.alter_column('order_id',
               existing_type=sa.VARCHAR(length=32),
               nullable=False)
        batch_op.drop_column('data')
        batch_op.drop_column('type')
        batch_op.drop_column('device_id')

    with op.batch_alter_table('pairings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pairings_phone'))

    op.drop_table('pairings')
    with op.batch_alter_table('pairing_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pairing_codes_device_id'))

    op.drop_table('pairing_codes')
    with op.batch_alter_table('bills', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bills_device_id'))

    op.drop_table('bills')
    with op.batch_alter_table('boss_events', schema=None) as batch_op:
        batch_op.drop_index('ix_boss_events_status_next')

    op.drop_table('boss_events')
