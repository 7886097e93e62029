"""Dashboard: a GIN index for the judgement log's category filter (PostgreSQL only).

The log explorer filters by "judgements that flagged category X": `flagged_categories::jsonb @> '["X"]'`.
A GIN index with jsonb_path_ops on that expression answers it without reading every flagged row of
the tenant. SQLite has no such index; there the filter uses json_each over the tenant's flagged rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEX = "ix_judgements_flagged_categories"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON judgements "
                   "USING gin ((flagged_categories::jsonb) jsonb_path_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
