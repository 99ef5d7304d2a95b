"""hardening

The SMS whose body still holds a secret (a code, a payment link, a pairing code): few at any
time, found by this partial index when the worker redacts those that have left the queue.
Wallets are no longer locked for a while after wrong passwords (their clients wait instead,
in Redis), so ``web_locked_until`` goes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNREDACTED = sa.text("body <> redacted_body")


def upgrade() -> None:
    with op.batch_alter_table('wallets') as batch_op:
        batch_op.drop_column('web_locked_until')
    op.create_index('ix_sms_outbox_unredacted', 'sms_outbox', ['id'], unique=False,
                    postgresql_where=_UNREDACTED, sqlite_where=_UNREDACTED)


def downgrade() -> None:
    op.drop_index('ix_sms_outbox_unredacted', table_name='sms_outbox')
    with op.batch_alter_table('wallets') as batch_op:
        batch_op.add_column(sa.Column('web_locked_until', sa.DateTime(), nullable=True))
