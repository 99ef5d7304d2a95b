"""sms connections

Each SMS row records the SMPP connection it went by (``SMPP_CONFIG``'s ``id``; ``default``
without the file), so an operator sees which SMSC carried what and the relay knows which
stream holds it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sms_outbox') as batch_op:
        batch_op.add_column(sa.Column('connection', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sms_outbox') as batch_op:
        batch_op.drop_column('connection')
