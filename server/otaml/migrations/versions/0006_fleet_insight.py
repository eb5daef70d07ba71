"""fleet insight: history aggregates, device health, the ML gate, audit log, webhooks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

History is aggregates only (per-minute and per-hour buckets, per-device hours). Rollouts that exist
keep their behaviour: the ML gate's thresholds are NULL (off) and its other settings get defaults.
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('credential', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entry_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_at'), ['at'], unique=False)

    op.create_table('device_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('start', sa.BigInteger(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('checkins', sa.Integer(), nullable=False),
    sa.Column('reboots', sa.Integer(), nullable=False),
    sa.Column('ml_counts', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('latency_sum', sa.BigInteger(), nullable=False),
    sa.Column('latency_n', sa.Integer(), nullable=False),
    sa.Column('rssi_sum', sa.Integer(), nullable=False),
    sa.Column('rssi_n', sa.Integer(), nullable=False),
    sa.Column('rssi_min', sa.Integer(), nullable=True),
    sa.Column('free_heap_min', sa.BigInteger(), nullable=True),
    sa.Column('min_free_heap', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_id', 'start')
    )
    with op.batch_alter_table('device_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_history_start'), ['start'], unique=False)

    op.create_table('history_bucket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resolution', sa.Integer(), nullable=False),
    sa.Column('start', sa.BigInteger(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('checkins', sa.BigInteger(), nullable=False),
    sa.Column('devices', sa.BigInteger(), nullable=False),
    sa.Column('first_seen', sa.BigInteger(), nullable=False),
    sa.Column('reboots', sa.BigInteger(), nullable=False),
    sa.Column('latency_sum', sa.BigInteger(), nullable=False),
    sa.Column('latency_n', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('resolution', 'start', 'channel', 'version')
    )
    with op.batch_alter_table('history_bucket', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_history_bucket_start'), ['start'], unique=False)

    op.create_table('history_class',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resolution', sa.Integer(), nullable=False),
    sa.Column('start', sa.BigInteger(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('resolution', 'start', 'channel', 'version', 'label')
    )
    with op.batch_alter_table('history_class', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_history_class_start'), ['start'], unique=False)

    op.create_table('history_outcome',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resolution', sa.Integer(), nullable=False),
    sa.Column('start', sa.BigInteger(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('resolution', 'start', 'channel', 'version', 'kind', 'reason')
    )
    with op.batch_alter_table('history_outcome', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_history_outcome_start'), ['start'], unique=False)

    op.create_table('webhook',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('webhook_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.Integer(), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('dedupe', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('payload', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('claimed_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('delivered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['webhook_id'], ['webhook.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('webhook_id', 'dedupe')
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_delivery_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_delivery_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_delivery_webhook_id'), ['webhook_id'], unique=False)

    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rssi', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('free_heap', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('min_free_heap', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('uptime_s', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('reset_reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))

    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ml_max_divergence', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ml_max_latency_regression', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ml_min_samples', sa.Integer(), nullable=False, server_default='500'))
        batch_op.add_column(sa.Column('ml_window', sa.Integer(), nullable=False, server_default='900'))



def downgrade() -> None:
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.drop_column('ml_window')
        batch_op.drop_column('ml_min_samples')
        batch_op.drop_column('ml_max_latency_regression')
        batch_op.drop_column('ml_max_divergence')

    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_column('reset_reason')
        batch_op.drop_column('uptime_s')
        batch_op.drop_column('min_free_heap')
        batch_op.drop_column('free_heap')
        batch_op.drop_column('rssi')

    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_webhook_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_state'))
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_next_attempt_at'))

    op.drop_table('webhook_delivery')
    op.drop_table('webhook')
    with op.batch_alter_table('history_outcome', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_history_outcome_start'))

    op.drop_table('history_outcome')
    with op.batch_alter_table('history_class', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_history_class_start'))

    op.drop_table('history_class')
    with op.batch_alter_table('history_bucket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_history_bucket_start'))

    op.drop_table('history_bucket')
    with op.batch_alter_table('device_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_history_start'))

    op.drop_table('device_history')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entry_at'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_action'))

    op.drop_table('audit_entry')
