"""sms connections

Each SMS row records the SMPP connection it went by (``SMPP_CONFIG``'s ``id``; ``default``
without the file), so an operator sees which SMSC carried what and the relay knows which
stream holds it. Each part records it too: message ids are an SMSC's own, and two SMSCs may
give the same one, so a receipt is matched to a part of the connection it came on.

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
    with op.batch_alter_table('sms_parts') as batch_op:
        batch_op.add_column(sa.Column('connection', sa.String(length=32), nullable=False,
                                      server_default='default'))
        batch_op.drop_index('ix_sms_parts_provider_message_id')
        batch_op.create_index('ix_sms_parts_provider_connection_message_id',
                              ['provider', 'connection', 'message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sms_parts') as batch_op:
        batch_op.drop_index('ix_sms_parts_provider_connection_message_id')
        batch_op.create_index('ix_sms_parts_provider_message_id', ['provider', 'message_id'],
                              unique=False)
        batch_op.drop_column('connection')
    with op.batch_alter_table('sms_outbox') as batch_op:
        batch_op.drop_column('connection')
