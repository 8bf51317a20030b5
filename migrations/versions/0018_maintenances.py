"""maintenances

Revision ID: 0018_maintenances
Revises: 0017_incidents
Create Date: 2026-11-30 12:27:37.172570
"""
from alembic import op
import sqlalchemy as sa


revision = '0018_maintenances'
down_revision = '0017_incidents'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('maintenances',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('components', sa.Text(), nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('scheduled_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('author', sa.String(length=120), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenances'))
    )
    with op.batch_alter_table('maintenances', schema=None) as batch_op:
        batch_op.create_index('ix_maintenances_window', ['scheduled_for', 'scheduled_until'], unique=False)



def downgrade():
    with op.batch_alter_table('maintenances', schema=None) as batch_op:
        batch_op.drop_index('ix_maintenances_window')

    op.drop_table('maintenances')
