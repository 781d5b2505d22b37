"""The HTML report in a real headless Chromium (Debian's package, driven by Playwright):
it loads without console errors, its plots render, and a column sort works. The screenshot
is kept in test-artifacts/report.png."""

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgevpr.explore.report import write_report
from edgevpr.explore.store import Store
from tests.test_explore_analysis import _row

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_or_skip():
    """Chromium and Playwright, or a skip that says why; under CI (CI=true) a missing browser
    fails the run instead, so that CI cannot pass without the browser test."""
    missing = "Chromium is not installed (apt install chromium)" if CHROMIUM is None else None
    try:
        from playwright import sync_api
    except ImportError:
        sync_api, missing = None, missing or "playwright is not installed (the test extra)"
    if missing and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the browser test: {missing}")
    if missing:
        pytest.skip(missing)
    return sync_api


@contextmanager
def _page(sync_api, page_file: Path, errors: list):
    """The page of ``page_file`` in headless Chromium; console and page errors go to ``errors``."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_file.as_uri())
        yield page
        browser.close()


def test_report_renders_and_sorts_in_chromium(tmp_path):
    sync_api = _browser_or_skip()
    store = Store(tmp_path / "runs.db")
    for i, (backbone, recall, mb, ms, precision) in enumerate(
        [
            ("mobilenetv2", 52.0, 8.9, 60.0, "fp32"),
            ("mobilenetv2", 51.5, 2.4, 15.0, "int8"),
            ("efficientnet_lite0", 48.0, 13.4, 70.0, "fp32"),
            ("squeezenet", 30.0, 2.9, 20.0, "fp32"),
            ("resnet18_conv4", 45.0, 11.0, 90.0, "int4"),
        ]
    ):
        store.add(_row(str(i), backbone, recall, mb, ms, precision=precision, dim=256 * (i + 1)))
    page_file = write_report(store, tmp_path / "report.html", map_size=50_000)
    store.close()

    errors = []
    with _page(sync_api, page_file, errors) as page:
        page.wait_for_selector("#p-bytes svg circle.point")
        assert errors == []
        assert page.locator("#p-bytes circle.point").count() == 5
        assert int(page.locator("#p-bytes path.front").get_attribute("data-front")) >= 2
        assert page.locator("#p-precision circle.point").count() == 5
        assert page.locator("#runs tbody tr").count() == 5
        first_recall = lambda: page.locator("#runs tbody tr").first.locator("td").nth(8).inner_text()  # noqa: E731
        assert first_recall() == "52.0"  # sorted by R@1, highest first
        assert page.locator("#runs tbody tr").first.locator("td").nth(3).inner_text() == "32"  # bits per dimension
        page.locator("#runs th", has_text="R@1").first.click()
        assert first_recall() == "30.0"  # the click reversed the order
        page.locator("#runs th", has_text="backbone").click()
        assert page.locator("#runs tbody tr").first.locator("td").first.inner_text() == "squeezenet"
        page.fill("#mapsize", "1000000")
        page.dispatch_event("#mapsize", "change")
        assert "N = 1000000" in page.locator("#p-total h3").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert errors == []


def test_localization_report_renders_in_chromium(tmp_path, tiny_street):
    """A map of the street, its queries streamed from a ROS 1 bag with NavSatFix positions and
    `--report`: the page shows the trajectory, the error and precision-recall plots, the latency
    and a gallery of the worst failures; Chromium logs no error. Screenshot:
    test-artifacts/localization_report.png."""
    pytest.importorskip("rosbags", reason="rosbags (the test extra) writes the bag")
    pytest.importorskip("matplotlib", reason="matplotlib (the report extra) draws the report")
    sync_api = _browser_or_skip()
    from click.testing import CliRunner

    from edgevpr.cli import main
    from edgevpr.data.images import list_images
    from edgevpr.data.recordings.writers import write_bag

    bag = tmp_path / "queries.bag"
    write_bag(bag, list_images(tiny_street / "queries"), ros1=True, compressed=True)
    runner = CliRunner()
    model = ["--backbone", "squeezenet", "--aggregator", "gem", "--size", "72x96"]
    built = runner.invoke(
        main, ["map", "build", *model, "--images", str(tiny_street / "database"), "--out", str(tmp_path / "m")]
    )
    assert built.exit_code == 0, built.output
    page_file = tmp_path / "report.html"
    argv = [
        "localize",
        str(tmp_path / "m"),
        "--bag",
        str(bag),
        "--topic",
        "/camera/image",
        "--positions-topic",
        "/gps/fix",
    ]
    result = runner.invoke(main, [*argv, "--report", str(page_file), "--report-threshold-m", "15"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    wrong = sum(json.loads(line)["error_m"] > 15 for line in lines)
    errors = []
    with _page(sync_api, page_file, errors) as page:
        assert page.locator("#figures img").count() == 4  # trajectory, error, precision-recall, latency
        sizes = page.eval_on_selector_all("#figures img", "images => images.map(i => i.naturalWidth)")
        assert min(sizes) > 300
        assert page.locator("#gallery tr").count() == 1 + 2 * min(wrong, 6)
        assert "10 frames" in page.locator("#summary").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "localization_report.png"), full_page=True)
    assert errors == [] and wrong > 0
