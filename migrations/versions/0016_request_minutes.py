"""request minutes

Revision ID: 0016_request_minutes
Revises: 0015_alert_silences
Create Date: 2026-11-30 12:04:22.023095
"""
from alembic import op
import sqlalchemy as sa


revision = '0016_request_minutes'
down_revision = '0015_alert_silences'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('request_minutes',
    sa.Column('minute', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('errors', sa.BigInteger(), nullable=False),
    sa.Column('duration_sum', sa.Float(), nullable=False),
    sa.Column('b0', sa.BigInteger(), nullable=False),
    sa.Column('b1', sa.BigInteger(), nullable=False),
    sa.Column('b2', sa.BigInteger(), nullable=False),
    sa.Column('b3', sa.BigInteger(), nullable=False),
    sa.Column('b4', sa.BigInteger(), nullable=False),
    sa.Column('b5', sa.BigInteger(), nullable=False),
    sa.Column('b6', sa.BigInteger(), nullable=False),
    sa.Column('b7', sa.BigInteger(), nullable=False),
    sa.Column('b8', sa.BigInteger(), nullable=False),
    sa.Column('b9', sa.BigInteger(), nullable=False),
    sa.Column('b10', sa.BigInteger(), nullable=False),
    sa.Column('b11', sa.BigInteger(), nullable=False),
    sa.Column('b12', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('minute', name=op.f('pk_request_minutes'))
    )


def downgrade():
    op.drop_table('request_minutes')
