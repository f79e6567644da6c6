"""${message}

Revision ${up_revision}, revises ${down_revision | comma,n}, created ${create_date}.
Replace this with what the revision changes, in two lines at most (test_docstrings.py). Define the
tables it touches as of this revision, not by importing `schema.py`, and keep `downgrade()` to
what this revision created (docs/deployment.md, "Migrations and privileges")."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | None = ${repr(branch_labels)}
depends_on: str | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
