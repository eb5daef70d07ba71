"""rollouts, device twins, config layers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Existing devices get their ring bucket computed here; new columns that cannot be NULL get a server
default so that tables with rows can be altered.
"""

import hashlib

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('config_layer',
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('scope', 'name')
    )
    op.create_table('fleet_revision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('policy', sa.BigInteger(), nullable=False),
    sa.Column('config', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('rollout',
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=17), nullable=False),
    sa.Column('rings', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('devices', sa.JSON(), nullable=False),
    sa.Column('success_pct', sa.Float(), nullable=False),
    sa.Column('max_failures', sa.Integer(), nullable=True),
    sa.Column('max_failure_pct', sa.Float(), nullable=True),
    sa.Column('min_reports', sa.Integer(), nullable=False),
    sa.Column('silence_timeout', sa.Integer(), nullable=False),
    sa.Column('soak_seconds', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('halt_reason', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('acknowledged_failures', sa.Integer(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('stage_started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['release_id'], ['release.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollout_channel'), ['channel'], unique=False)
        batch_op.create_index(batch_op.f('ix_rollout_release_id'), ['release_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_rollout_state'), ['state'], unique=False)

    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bucket', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('tags', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('pin_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('hold', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('config_revision', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('reported_config', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True))
        batch_op.create_index(batch_op.f('ix_device_bucket'), ['bucket'], unique=False)

    with op.batch_alter_table('device_event', schema=None) as batch_op:
        batch_op.create_index('ix_device_event_version_kind', ['version', 'kind'], unique=False)

    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staged', sa.Boolean(), nullable=False, server_default=sa.false()))

    conn = op.get_bind()
    conn.execute(sa.text("INSERT INTO fleet_revision (id, policy, config) VALUES (1, 0, 0)"))
    for (device_id,) in conn.execute(sa.text("SELECT device_id FROM device")).all():
        bucket = int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") % 10000
        conn.execute(sa.text("UPDATE device SET bucket = :b WHERE device_id = :d"), {"b": bucket, "d": device_id})


def downgrade() -> None:
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.drop_column('staged')

    with op.batch_alter_table('device_event', schema=None) as batch_op:
        batch_op.drop_index('ix_device_event_version_kind')

    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_bucket'))
        batch_op.drop_column('reported_config')
        batch_op.drop_column('config_revision')
        batch_op.drop_column('hold')
        batch_op.drop_column('pin_version')
        batch_op.drop_column('tags')
        batch_op.drop_column('bucket')

    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollout_state'))
        batch_op.drop_index(batch_op.f('ix_rollout_release_id'))
        batch_op.drop_index(batch_op.f('ix_rollout_channel'))

    op.drop_table('rollout')
    op.drop_table('fleet_revision')
    op.drop_table('config_layer')
