"""messages: the accept response is rebuilt, not stored

Revision ID: 0010_drop_message_response
Revises: 0009_inbound
Create Date: 2026-11-27 21:21:31.148862
"""
from alembic import op
import sqlalchemy as sa


revision = '0010_drop_message_response'
down_revision = '0009_inbound'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('response')



def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('response', sa.Text(), nullable=False, server_default='{}'))

