"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 10:51:38.481732
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.store.models


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('balance >= 0', name=op.f('ck_accounts_balance_never_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts'))
    )
    op.create_table('devices',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_devices'))
    )
    op.create_table('packages',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('period_days', sa.Integer(), nullable=False),
    sa.CheckConstraint('period_days > 0', name=op.f('ck_packages_period_positive')),
    sa.CheckConstraint('price > 0', name=op.f('ck_packages_price_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_packages'))
    )
    op.create_table('wallets',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=120), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wallets'))
    )
    op.create_table('cards',
    sa.Column('wallet_id', sa.String(length=64), nullable=False),
    sa.Column('bank', sa.String(length=64), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], name=op.f('fk_cards_wallet_id_wallets')),
    sa.PrimaryKeyConstraint('wallet_id', name=op.f('pk_cards'))
    )
    op.create_table('entitlements',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('package_id', sa.String(length=64), nullable=False),
    sa.Column('active_until', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_entitlements_device_id_devices')),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_entitlements_package_id_packages')),
    sa.PrimaryKeyConstraint('device_id', 'package_id', name=op.f('pk_entitlements'))
    )
    op.create_table('orders',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('package_id', sa.String(length=64), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('wallet_id', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=True),
    sa.Column('code_attempts', sa.Integer(), nullable=False),
    sa.Column('link_token_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint('amount > 0', name=op.f('ck_orders_amount_positive')),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_orders_device_id_devices')),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_orders_package_id_packages')),
    sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], name=op.f('fk_orders_wallet_id_wallets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('link_token_hash', name=op.f('uq_orders_link_token_hash'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_device_created', ['device_id', 'created_at'], unique=False)
        batch_op.create_index('ix_orders_phone_created', ['phone', 'created_at'], unique=False)
        batch_op.create_index('ix_orders_status_expires', ['status', 'expires_at'], unique=False)

    op.create_table('phone_bindings',
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('wallet_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], name=op.f('fk_phone_bindings_wallet_id_wallets')),
    sa.PrimaryKeyConstraint('phone', name=op.f('pk_phone_bindings'))
    )
    with op.batch_alter_table('phone_bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phone_bindings_wallet_id'), ['wallet_id'], unique=False)

    op.create_table('holds',
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=80), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('settled_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('held', 'captured', 'released')", name=op.f('ck_holds_status_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_holds_amount_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_holds_account_id_accounts')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_holds_order_id_orders')),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_holds'))
    )
    op.create_table('journal_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_journal_entries_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_entries')),
    sa.UniqueConstraint('order_id', 'kind', name=op.f('uq_journal_entries_order_id'))
    )
    op.create_table('order_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_events_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_events'))
    )
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_events_order_id'), ['order_id'], unique=False)

    op.create_table('sms_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('to_phone', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('redacted_body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('expires_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_sms_outbox_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_outbox'))
    )
    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_outbox_order_id'), ['order_id'], unique=False)
        batch_op.create_index('ix_sms_outbox_status_id', ['status', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_outbox_to_phone'), ['to_phone'], unique=False)

    op.create_table('postings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.String(length=80), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_postings_account_id_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_postings_entry_id_journal_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postings_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_postings_entry_id'), ['entry_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_postings_entry_id'))
        batch_op.drop_index(batch_op.f('ix_postings_account_id'))

    op.drop_table('postings')
    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_outbox_to_phone'))
        batch_op.drop_index('ix_sms_outbox_status_id')
        batch_op.drop_index(batch_op.f('ix_sms_outbox_order_id'))

    op.drop_table('sms_outbox')
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_events_order_id'))

    op.drop_table('order_events')
    op.drop_table('journal_entries')
    op.drop_table('holds')
    with op.batch_alter_table('phone_bindings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phone_bindings_wallet_id'))

    op.drop_table('phone_bindings')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_status_expires')
        batch_op.drop_index('ix_orders_phone_created')
        batch_op.drop_index('ix_orders_device_created')

    op.drop_table('orders')
    op.drop_table('entitlements')
    op.drop_table('cards')
    op.drop_table('wallets')
    op.drop_table('packages')
    op.drop_table('devices')
    op.drop_table('accounts')
