"""backups

Revision ID: 0012_backups
Revises: 0011_outbox_index
Create Date: 2026-11-30 10:51:12.266430
"""
from alembic import op
import sqlalchemy as sa


revision = '0012_backups'
down_revision = '0011_outbox_index'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('backups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('engine', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('plain_bytes', sa.BigInteger(), nullable=True),
    sa.Column('artefacts', sa.Text(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.Column('compression', sa.String(length=16), nullable=True),
    sa.Column('storage', sa.String(length=20), nullable=False),
    sa.Column('location', sa.String(length=500), nullable=True),
    sa.Column('server_version', sa.String(length=120), nullable=True),
    sa.Column('server_version_num', sa.Integer(), nullable=True),
    sa.Column('lsn_start', sa.String(length=32), nullable=True),
    sa.Column('lsn_end', sa.String(length=32), nullable=True),
    sa.Column('timeline', sa.Integer(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('table_checksums', sa.Text(), nullable=True),
    sa.Column('pinned', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verify_ok', sa.Boolean(), nullable=True),
    sa.Column('verify_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['backups.id'], name=op.f('fk_backups_parent_id_backups')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backups')),
    sa.UniqueConstraint('name', name=op.f('uq_backups_name'))
    )
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.create_index('ix_backups_kind_status_finished', ['kind', 'status', 'finished_at'], unique=False)

    op.create_table('restore_drills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('backup_id', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ok', sa.Boolean(), nullable=True),
    sa.Column('rto_seconds', sa.Float(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['backup_id'], ['backups.id'], name=op.f('fk_restore_drills_backup_id_backups'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_restore_drills'))
    )
    with op.batch_alter_table('restore_drills', schema=None) as batch_op:
        batch_op.create_index('ix_restore_drills_started', ['started_at'], unique=False)



def downgrade():
    with op.batch_alter_table('restore_drills', schema=None) as batch_op:
        batch_op.drop_index('ix_restore_drills_started')

    op.drop_table('restore_drills')
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_index('ix_backups_kind_status_finished')

    op.drop_table('backups')
