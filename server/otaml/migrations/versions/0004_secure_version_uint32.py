"""secure_version holds a uint32_t

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

esp_app_desc_t.secure_version is a uint32_t, and a manifest may carry any value up to 2^32-1; an
INTEGER column on PostgreSQL stops at 2^31-1. Widened on releases and on devices' reported state.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.alter_column('secure_version', existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.alter_column('secure_version', existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.alter_column('secure_version', existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=True)
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.alter_column('secure_version', existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
