"""tv apps

The TV apps and admin tools that call the API, their keys (hashed), and the app each device
belongs to.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.store.models

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('apps',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apps')),
    sa.UniqueConstraint('name', name=op.f('uq_apps_name'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('app_id', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', gateway.store.models.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', gateway.store.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_api_keys_app_id_apps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys'))
    )
    op.create_index(op.f('ix_api_keys_app_id'), 'api_keys', ['app_id'], unique=False)
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('app_id', sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_devices_app_id_apps'), 'apps', ['app_id'],
                                    ['id'])


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_devices_app_id_apps'), type_='foreignkey')
        batch_op.drop_column('app_id')
    op.drop_index(op.f('ix_api_keys_app_id'), table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_table('apps')
