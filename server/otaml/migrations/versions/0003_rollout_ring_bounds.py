"""rollout ring bounds

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Rings are widened on small fleets so the first ring offered holds a device (otaml/rollouts/rings.py);
a rollout stores the bounds of the rings it reached. Rollouts already under way keep offering what they
offered: their reached rings get their nominal bounds.
"""

import json

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounds', sa.JSON(), nullable=False, server_default='[]'))

    conn = op.get_bind()
    for rollout_id, rings, stage in conn.execute(sa.text("SELECT id, rings, stage FROM rollout")).all():
        rings = json.loads(rings) if isinstance(rings, str) else rings
        bounds = [max(rings[: i + 1]) * 100 for i in range(stage + 1)]
        conn.execute(sa.text("UPDATE rollout SET bounds = :b WHERE id = :i"), {"b": json.dumps(bounds), "i": rollout_id})


def downgrade() -> None:
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.drop_column('bounds')
