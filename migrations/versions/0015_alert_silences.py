"""alert silences

Revision ID: 0015_alert_silences
Revises: 0014_alert_notifications
Create Date: 2026-11-30 11:52:10.972459
"""
from alembic import op
import sqlalchemy as sa


revision = '0015_alert_silences'
down_revision = '0014_alert_notifications'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('alert_silences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('matchers', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('author', sa.String(length=120), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_silences'))
    )
    with op.batch_alter_table('alert_silences', schema=None) as batch_op:
        batch_op.create_index('ix_alert_silences_ends', ['ends_at'], unique=False)



def downgrade():
    with op.batch_alter_table('alert_silences', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_silences_ends')

    op.drop_table('alert_silences')
