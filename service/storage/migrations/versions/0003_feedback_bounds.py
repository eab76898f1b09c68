"""Feedback bounded per issuer and once per card and outcome (issue 18 R5).

Two nullable columns on ``cds_feedback``, nothing dropped or rewritten:

* ``issuer``: the JWT issuer that sent the item (quota per minute and in total); NULL for rows
  stored before this revision, which count for no issuer.
* ``once_key``: service, outcome and card of the item, under a unique index: a second item about
  the same card with the same outcome is not stored. Rows already stored keep their place: the
  earliest row of each (service, card, outcome) gets the key, later ones stay NULL (NULLs never
  collide in a unique index on SQLite or PostgreSQL), so every stored row is kept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("cds_feedback", sa.Column("issuer", sa.String(255), nullable=True))
    op.add_column("cds_feedback", sa.Column("once_key", sa.String(512), nullable=True))
    # the same text the store computes (models.once_key): service_id|outcome|card_uuid
    op.execute("UPDATE cds_feedback SET once_key = service_id || '|' || outcome || '|' || card_uuid "
               "WHERE id IN (SELECT MIN(id) FROM cds_feedback GROUP BY service_id, outcome, card_uuid)")
    op.create_index("ix_cds_feedback_once_key", "cds_feedback", ["once_key"], unique=True)
    op.create_index("ix_cds_feedback_issuer_received_at", "cds_feedback", ["issuer", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_cds_feedback_issuer_received_at", table_name="cds_feedback")
    op.drop_index("ix_cds_feedback_once_key", table_name="cds_feedback")
    op.drop_column("cds_feedback", "once_key")
    op.drop_column("cds_feedback", "issuer")
