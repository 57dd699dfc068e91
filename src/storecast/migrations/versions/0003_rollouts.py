"""Rollouts: deployments gain arms, a strategy and a canary's state; rollout decisions.

Existing deployments become immediate ones with a single arm A (their version or alias),
a fresh salt, and ``updated_at`` = ``created_at``; their status stays ``active``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 09:12:00.000000
"""

from __future__ import annotations

import json
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DEPLOYMENTS = sa.table(
    "deployments",
    sa.column("id", sa.Integer()),
    sa.column("version", sa.Integer()),
    sa.column("alias", sa.String()),
    sa.column("created_at", sa.DateTime()),
    sa.column("salt", sa.String()),
    sa.column("variants_json", sa.Text()),
    sa.column("updated_at", sa.DateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("strategy", sa.String(length=16), nullable=False, server_default="immediate")
        )
        batch_op.add_column(sa.Column("salt", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("variants_json", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("plan_json", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("step_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("step_started_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("promote_alias", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))

    conn = op.get_bind()
    d = _DEPLOYMENTS.c
    for row in conn.execute(sa.select(d.id, d.version, d.alias, d.created_at)).all():
        arms = [{"arm": "A", "version": row.version, "alias": row.alias}]
        conn.execute(
            _DEPLOYMENTS.update()
            .where(d.id == row.id)
            .values(
                salt=secrets.token_hex(16),
                variants_json=json.dumps(arms),
                updated_at=row.created_at,
            )
        )

    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.alter_column("salt", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("variants_json", existing_type=sa.Text(), nullable=False)

    op.create_table(
        "rollout_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("percent_before", sa.Float(), nullable=False),
        sa.Column("percent_after", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("gates_json", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_rollout_decisions_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_decisions")),
        sa.UniqueConstraint(
            "deployment_id", "step_index", "kind", name="uq_rollout_decisions_one_per_step"
        ),
    )
    with op.batch_alter_table("rollout_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_rollout_decisions_decided_at", ["decided_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rollout_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_rollout_decisions_decided_at")
    op.drop_table("rollout_decisions")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for name in (
            "updated_at",
            "promote_alias",
            "step_started_at",
            "step_index",
            "plan_json",
            "variants_json",
            "salt",
            "strategy",
        ):
            batch_op.drop_column(name)
