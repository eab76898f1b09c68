"""Cards issued and clinician feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "cds_card",
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("rule_title", sa.String(255), nullable=True),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("knowledge_version", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid", name="pk_cds_card"),
    )
    op.create_index("ix_cds_card_issued_at", "cds_card", ["issued_at"])
    op.create_index("ix_cds_card_rule_id", "cds_card", ["rule_id"])

    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(255), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("override_reason_code", sa.String(255), nullable=True),
        sa.Column("override_reason_system", sa.String(1024), nullable=True),
        sa.Column("override_reason_display", sa.String(1024), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cds_feedback"),
        sa.UniqueConstraint("dedup_key", name="uq_cds_feedback_dedup_key"),
        sa.CheckConstraint("outcome IN ('accepted', 'overridden')", name="ck_cds_feedback_outcome"),
    )
    op.create_index("ix_cds_feedback_card_uuid", "cds_feedback", ["card_uuid"])
    op.create_index("ix_cds_feedback_outcome_at", "cds_feedback", ["outcome_at"])
    op.create_index("ix_cds_feedback_received_at", "cds_feedback", ["received_at"])


def downgrade() -> None:
    op.drop_table("cds_feedback")
    op.drop_table("cds_card")
