"""status components: when each status-page component first appeared and when its status last
changed (Statuspage's created_at and updated_at, stable between requests)

Revision ID: 0025_status_components
Revises: 0024_alert_routes
Create Date: 2026-12-01 20:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0025_status_components'
down_revision = '0024_alert_routes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('status_components',
    sa.Column('id', sa.String(length=160), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_components'))
    )


def downgrade():
    op.drop_table('status_components')
