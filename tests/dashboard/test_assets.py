"""The dashboard's static assets: the vendored chart library is the pinned npm release, with its licence."""

from __future__ import annotations

import hashlib
import re

from guardrail.dashboard.http import STATIC

# chart.js@4.6.1 package/dist/chart.umd.min.js, as published on the npm registry
CHARTJS_SHA256 = "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"


def test_vendored_chartjs_is_the_pinned_release_with_its_licence() -> None:
    vendor = STATIC / "vendor" / "chartjs"
    assert hashlib.sha256((vendor / "chart.umd.min.js").read_bytes()).hexdigest() == CHARTJS_SHA256
    assert "MIT License" in (vendor / "LICENSE.md").read_text()
    assert "4.6.1" in (vendor / "README.md").read_text()


def test_pages_load_nothing_from_other_origins() -> None:
    for f in [STATIC / "index.html", STATIC / "app.css", *(STATIC / "js").glob("*.js")]:
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), f
        assert "@import" not in text, f
        # Text reaches the page only as text nodes: no HTML-parsing sinks at all.
        assert not re.search(r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write", text), f
        assert "eval(" not in text and "new Function" not in text, f
