"""Migration 0003 on a database with deployments made before it (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa

from storecast.common.db import make_engine, upgrade

T0 = datetime(2026, 11, 1, 8, 0)


def test_existing_deployments_become_immediate_single_arm_ones(database_url):
    upgrade(database_url, "0002")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO deployments (model, version, alias, selector_json, status, "
                "created_at, created_by) VALUES ('demand-lstm', 3, NULL, '{\"kind\": \"all\"}', "
                "'active', :t, 'x'), ('demand-lstm', NULL, 'production', '{\"kind\": \"all\"}', "
                "'active', :t, 'x')"
            ),
            {"t": T0},
        )
    upgrade(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT strategy, status, salt, variants_json, plan_json, step_index, updated_at "
                "FROM deployments ORDER BY id"
            )
        ).all()
        assert conn.execute(sa.text("SELECT count(*) FROM rollout_decisions")).scalar() == 0
    engine.dispose()
    assert [(r.strategy, r.status, r.plan_json, r.step_index) for r in rows] == [
        ("immediate", "active", None, None)
    ] * 2
    assert [json.loads(r.variants_json) for r in rows] == [
        [{"arm": "A", "version": 3, "alias": None}],
        [{"arm": "A", "version": None, "alias": "production"}],
    ]
    assert len({r.salt for r in rows}) == 2 and all(len(r.salt) == 32 for r in rows)
    assert all(str(r.updated_at).startswith("2026-11-01 08:00:00") for r in rows)
