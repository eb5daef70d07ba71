"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('device',
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('last_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('partition', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('ota_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('manifest_version', sa.BigInteger(), nullable=True),
    sa.Column('secure_version', sa.Integer(), nullable=True),
    sa.Column('last_event', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
    sa.Column('last_reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('ml_model', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=True),
    sa.Column('ml_counters', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True),
    sa.Column('ml_latency_us', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_device_id'), ['device_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_device_last_seen'), ['last_seen'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_version'), ['version'], unique=False)

    op.create_table('device_event',
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('device_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_event_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_event_device_id'), ['device_id'], unique=False)

    op.create_table('release',
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=17), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('project', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('chip', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('secure_version', sa.Integer(), nullable=False),
    sa.Column('idf_ver', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel', 'version')
    )
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_channel'), ['channel'], unique=False)
        batch_op.create_index(batch_op.f('ix_release_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_release_version'), ['version'], unique=False)

    op.create_table('signing_key',
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('public_pem', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key_id')
    )
    op.create_table('manifest',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('manifest_version', sa.BigInteger(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('issued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['signing_key.key_id'], ),
    sa.ForeignKeyConstraint(['release_id'], ['release.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('manifest', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manifest_channel'), ['channel'], unique=False)
        batch_op.create_index(batch_op.f('ix_manifest_manifest_version'), ['manifest_version'], unique=True)
        batch_op.create_index(batch_op.f('ix_manifest_release_id'), ['release_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('manifest', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manifest_release_id'))
        batch_op.drop_index(batch_op.f('ix_manifest_manifest_version'))
        batch_op.drop_index(batch_op.f('ix_manifest_channel'))

    op.drop_table('manifest')
    op.drop_table('signing_key')
    with op.batch_alter_table('release', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_release_version'))
        batch_op.drop_index(batch_op.f('ix_release_sha256'))
        batch_op.drop_index(batch_op.f('ix_release_channel'))

    op.drop_table('release')
    with op.batch_alter_table('device_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_event_device_id'))
        batch_op.drop_index(batch_op.f('ix_device_event_created_at'))

    op.drop_table('device_event')
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_version'))
        batch_op.drop_index(batch_op.f('ix_device_last_seen'))
        batch_op.drop_index(batch_op.f('ix_device_device_id'))

    op.drop_table('device')
