"""The report opens in a real headless browser, renders, and every inline image decodes.

Skipped where Chromium is absent, unless TOCSR_REQUIRE_BROWSER=1 (set by .ci/run), which turns a
missing browser into a failure.
"""

from __future__ import annotations

import os

import pytest

from reports.browser import check_page, find_chromium
from reports.build import build_report
from tests.reports.test_reports import run_dir  # noqa: F401  (fixture)

needs_browser = pytest.mark.skipif(find_chromium() is None and not os.environ.get("TOCSR_REQUIRE_BROWSER"),
                                   reason="chromium not installed")


@needs_browser
def test_report_renders_in_headless_chromium_with_all_images(run_dir, tmp_path):  # noqa: F811
    page = build_report(run_dir, tmp_path / "report")
    result = check_page(page, tmp_path / "report" / "screenshot.png")
    assert result.images_in_page >= 5
    assert result.images_failed == 0 and result.images_ok == result.images_in_page
    assert result.console_errors == []
    assert result.screenshot is not None and result.screenshot.stat().st_size > 10_000


@needs_browser
def test_a_broken_image_is_detected(tmp_path):
    page = tmp_path / "broken.html"
    from reports.html import page as render

    page.write_text(render("broken", [("x", "<img alt='bad' src='data:image/png;base64,AAAA'>")], {}))
    result = check_page(page)
    assert result.images_failed == 1


@needs_browser
def test_the_nightly_page_renders_in_headless_chromium_with_all_images(tmp_path):
    from reports.nightly import render_nightly
    from tests.reports.test_nightly import _history

    page, _ = render_nightly(_history(tmp_path / "h", slow={"espcn": 1.3}), tmp_path / "nightly")
    result = check_page(page, tmp_path / "nightly" / "screenshot.png")
    assert result.images_in_page >= 1 and result.images_failed == 0 and result.images_ok == result.images_in_page
    assert result.console_errors == []
