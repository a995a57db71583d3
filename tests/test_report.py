"""`snakemake --report` on the smoke run: one page with every result, the config and run times."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from conftest import run_snakemake

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,1000",
    # let the page's scripts lay the report out before the picture is taken
    "--virtual-time-budget=15000",
]


@pytest.fixture(scope="session")
def report(smoke_run) -> tuple[Path, str]:
    log = run_snakemake(
        "--configfile", "configs/smoke.yaml", "--report", "report.html", cwd=smoke_run
    )
    return smoke_run / "report.html", log


def report_outputs(workflow: Path) -> list[str]:
    """File names of every output the rules mark with report() (or lm_report, align_report),
    their paths read as the rule files write them: from prunescope.paths."""
    from prunescope import paths

    path = r'fill\([^)]*\)|paths\.\w+|"[^"]+"'
    names = []
    for rule_file in (workflow / "workflow/rules").glob("*.smk"):
        for expression in re.findall(rf"report\(\s*({path})", rule_file.read_text()):
            names.append(Path(eval(expression, {"fill": paths.fill, "paths": paths})).name)
    return names


def test_report_builds_without_caption_errors(report):
    _, log = report
    assert "Report created" in log
    assert "ERROR/" not in log and "WARNING/" not in log, log[-3000:]


def test_report_holds_every_table_and_figure_with_its_caption(report, smoke_run):
    html = report[0].read_text(errors="replace")
    names = report_outputs(smoke_run)
    assert len(names) >= 20
    for name in names:
        if "{" not in name:
            assert name in html, name
    for wildcard_figure in ("figA8.png", "fig4.png", "figA4.png", "figA5.png"):
        assert wildcard_figure in html
    for caption in ("Table 3 (RQ4, fragility)", "Reproduces Fig. A8", "seed-to-seed floor"):
        assert caption in html, caption


def test_report_shows_the_config_used_and_per_rule_run_times(report):
    html = report[0].read_text(errors="replace")
    assert "config.yaml" in html and "The configuration this run used" in html
    runtimes = re.search(r"var runtimes_spec = (\{.*?\});", html, re.S)
    assert runtimes is not None
    for rule in ("train_sae", "capture_activations", "solve_align_mip", "logistic_fit"):
        assert f'"rule": "{rule}", "runtime"' in runtimes[1], rule


def rendered_text(dom: str, element_id: str) -> str:
    """Visible text of one element in a DOM dump, scripts and styles left out."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    start = dom.index(f'id="{element_id}"')
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom[start:]))


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed")
    page = report[0].as_uri()
    # the report is an empty <div id="app"> until its scripts run: what the DOM holds
    # after they ran is what a reader sees
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", page).stdout
    assert 'id="loading-screen" style="display: none;"' in dom
    text = rendered_text(dom, "app")
    shown_in_the_menu = ("Workflow", "Statistics", "Findings", "Run configuration", "Study LM")
    for shown in (*shown_in_the_menu, "Study ALIGN"):
        assert shown in text, shown
    assert "what weight pruning does to the features" in text

    screenshot = tmp_path / "report.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={screenshot}", page)
    print(f"report screenshot: {screenshot}")
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (1000, 1400)
    # dark text on a light page, not one flat colour: the picture shows the rendered page
    text_area = pixels[30:350, 290:800]
    assert text_area.mean() > 0.7 and text_area.min() < 0.3
    assert pixels.std() > 0.1


@pytest.mark.browser
def test_feature_pages_render_cards_contexts_and_shading(smoke_run, tmp_path):
    """The smoke run's feature page in headless Chromium: what the DOM holds after the page's
    script ran, and a screenshot (its path is printed) of what a reader sees."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed")
    page = (smoke_run / "results/browser/tiny/L1.html").as_uri()
    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", page).stdout
    cards = re.findall(r'<div class="card (survived|destroyed)" data-feature="(\d+)"', dom)
    assert {status for status, _ in cards} == {"survived", "destroyed"}
    assert dom.count('class="context"') >= len(cards) // 2
    shades = [float(a) for a in re.findall(r"rgba\(214,96,33,([0-9.]+)\)", dom)]
    assert max(shades) == 1.0 and 0 < sum(0 < a < 1 for a in shades)
    # every shaded line (dense, pruned, or a partner's) outlines its strongest token
    assert dom.count('class="tok peak"') == dom.count('class="side"') > 0
    assert 'id="feature-search"' in dom

    screenshot = tmp_path / "feature_page.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={screenshot}", page)
    print(f"feature page screenshot: {screenshot}")
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    orange = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.6) & (pixels[..., 2] < 0.4)
    assert orange.sum() > 100  # shaded tokens are on the screen
