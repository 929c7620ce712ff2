"""The quickstart report in a real browser: headless chromium loads it offline,
runs its script without an error, draws its plots, and paints a non-blank page.

Chromium comes from Debian (`.ci/browser-setup.sh`). Without it these tests are
skipped, except when CI=true: then they fail, so CI cannot pass without them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from runner.report import write_report
from tests.report.synth import SECTIONS

pytestmark = pytest.mark.browser



def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(
            "chromium is missing: run .ci/browser-setup.sh (CI=true requires the browser tests)"
        )
    pytest.skip("chromium is not installed (bash .ci/browser-setup.sh installs it)")


def headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless chromium run, with everything that could reach a network off."""
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    """What the page said on the console: script errors and CSP violations land here."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def browser() -> str:
    return chromium()


@pytest.fixture(scope="module")
def report(browser: str, quickstart_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("browser") / quickstart_bundle.name
    shutil.copytree(quickstart_bundle, bundle)
    return write_report(bundle)


def test_report_loads_offline_without_script_errors(
    browser: str, report: Path, tmp_path: Path
) -> None:
    proc = headless(browser, tmp_path / "profile", "--dump-dom", report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    # The page's own script ran to its end (it is allowed only by its hash).
    assert re.search(r'<html[^>]*data-report-ready="1"', dom), dom[:500]
    assert console_lines(proc.stderr) == []
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in dom, anchor
    # C, kernel, parallel coordinates, timeline: drawn inline, none loaded.
    assert len(re.findall(r'<svg [^>]*class="plot"', dom)) == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", report.read_text(), re.I)


def test_screenshot_shows_the_page_and_its_plots(
    browser: str, report: Path, tmp_path: Path
) -> None:
    png = tmp_path / "report.png"
    proc = headless(
        browser,
        tmp_path / "profile",
        f"--screenshot={png}",
        "--window-size=1280,4000",
        report.as_uri(),
    )
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    assert console_lines(proc.stderr) == []
    keep = os.environ.get(
        "XRUN_REPORT_SCREENSHOT"
    )  # to look at it: XRUN_REPORT_SCREENSHOT=/tmp/r.png
    if keep:
        shutil.copyfile(png, keep)
    assert png.stat().st_size > 50_000  # a blank 1280x4000 page is a few kB
    try:
        from PIL import Image
    except ImportError:  # matplotlib depends on Pillow, so this is unusual
        return
    with Image.open(png) as im:
        assert im.size == (1280, 4000)
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 500, len(colours)  # text, plots and anti-aliasing, not a blank page
        # The plots' own colours are painted: the points' blue and the timeline's green.
        painted = {c for _, c in colours}
        assert any(_near(c, (0x2F, 0x6D, 0xB3)) for c in painted), "no plot points"
        assert any(_near(c, (0x3B, 0x8F, 0x5A)) for c in painted), "no timeline bars"


def _near(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


@pytest.fixture(scope="module")
def repeats_report(browser: str, repeats_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("browser-repeats") / repeats_bundle.name
    shutil.copytree(repeats_bundle, bundle)
    return write_report(bundle)


def test_points_and_learning_curves_render_in_the_browser(
    browser: str, repeats_report: Path, tmp_path: Path
) -> None:
    """Repeats aggregated per point (n, mean ± std, best mean first) and the
    ctx.log learning curves, drawn as an inline plot the browser paints."""
    proc = headless(browser, tmp_path / "profile", "--dump-dom", repeats_report.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_lines(proc.stderr) == []
    dom = proc.stdout
    assert re.search(r'<html[^>]*data-report-ready="1"', dom)
    points = dom[dom.index('<section id="points">'):dom.index('<section id="curves">')]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", points, re.S)[1:]
    assert len(rows) == 2  # two points, three repeats each
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[0], re.S)]
    assert cells[1] == "0.5" and cells[2] == "3/3" and "±" in cells[3]  # decay 0.5 has the lower mean loss
    curves = dom[dom.index('<section id="curves">'):dom.index('<section id="objective">')]
    assert re.search(r'<svg [^>]*class="plot"[^>]*aria-label="learning curves of loss', curves)
    assert curves.count("<path") >= 2 * 3  # one line per trial at least
    png = tmp_path / "curves.png"
    shot = headless(browser, tmp_path / "profile2", f"--screenshot={png}", "--window-size=1280,6000",
                    repeats_report.as_uri())  # fmt: skip
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    with Image.open(png) as im:
        painted = {c for _, c in (im.convert("RGB").getcolors(maxcolors=1 << 22) or [])}
    # The second point's curve colour (orange, used by no other plot) is painted.
    assert any(_near(c, (0xE0, 0x7B, 0x39), tol=10) for c in painted), "no learning curve of the second point"
