"""The real pipeline on a trained run with known mistakes: interpretation, calibration, and the HTML report
rendered in headless Chromium (no console errors, every image loads; screenshot in test-artifacts/)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnnkit.cli.main import app

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
COLOURS = {"blue": 2, "green": 1, "red": 0}
# test images drawn in one colour but filed under another: (drawn as, filed under)
SWAPPED = [("red", "green"), ("green", "blue"), ("blue", "red")]
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
]
# Runs before the report's own markup: records console errors and failed loads, then, once the page has
# loaded, writes what it found into the DOM, where --dump-dom shows it.
PAGE_CHECK = """<script>
window.__problems = [];
const originalError = console.error;
console.error = (...args) => { window.__problems.push('console: ' + args.join(' ')); originalError(...args); };
window.addEventListener('error', e => window.__problems.push('error: ' + (e.message || e.target.src)), true);
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const marker = document.createElement('pre');
  marker.id = 'page-check';
  marker.textContent = JSON.stringify({images: images.length, broken, problems: window.__problems});
  document.body.appendChild(marker);
});
</script>"""

runner = CliRunner()


def draw(colour: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """Noise with one strong colour channel: trivially learnable, so every mistake is a planted one."""
    image = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
    image[..., COLOURS[colour]] = rng.integers(150, 256, (size, size))
    return Image.fromarray(image)


def write_colour_dataset(root: Path, seed: int = 0) -> list[Path]:
    """train/val/test folders of three colour classes; returns the test images filed under the wrong class."""
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", 12), ("val", 6), ("test", 10)):
        for colour in COLOURS:
            folder = root / split / colour
            folder.mkdir(parents=True)
            for i in range(per_class):
                draw(colour, rng).save(folder / f"{colour}_{i:02d}.png")
    swapped = []
    for drawn, filed in SWAPPED:
        path = root / "test" / filed / f"swapped_{drawn}.png"
        draw(drawn, rng).save(path)
        swapped.append(path)
    return swapped


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory: pytest.TempPathFactory):
    """A plain_cnn that tells the colours apart on every honest image (a few seconds), and the planted mistakes."""
    import cnnkit

    root = tmp_path_factory.mktemp("colours")
    swapped = write_colour_dataset(root / "data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = cnnkit.train(
            root / "data",
            model="plain_cnn",
            epochs=6,
            image_size=32,
            batch_size=4,
            lr=5e-4,
            patience=6,
            augment="light",
            progress=False,
            out=root / "run",
        )
    return run, swapped


def test_planted_label_mistakes_top_the_confidently_wrong_list(colour_run) -> None:
    from cnnkit.evaluate import analyze

    run, swapped = colour_run
    analysis = analyze(run.path, split="test")

    worst = analysis.interpretation.confidently_wrong
    assert {case.source for case in worst[: len(swapped)]} == {str(path) for path in swapped}
    for case in worst[: len(swapped)]:
        drawn = Path(case.source).stem.removeprefix("swapped_")
        assert (case.true_label, case.predicted_label) == (Path(case.source).parent.name, drawn)
    pairs = {(p.true_label, p.predicted_label): p.count for p in analysis.interpretation.confused_pairs}
    assert pairs == {(filed, drawn): 1 for drawn, filed in SWAPPED}
    for colour in COLOURS:  # 10 right + 1 planted per class: recall 10/11, precision 10/11
        assert analysis.evaluation.report[colour]["recall"] == pytest.approx(10 / 11)
        assert analysis.evaluation.report[colour]["precision"] == pytest.approx(10 / 11)
    saved = json.loads(analysis.files["interpretation"].read_text())
    assert saved["confidently_wrong"][0]["source"] == worst[0].source
    for name in ("roc_curves", "reliability", "confused_pairs", "confidently_wrong", "hesitant"):
        assert analysis.files[name].stat().st_size > 5_000, name


def test_evaluate_calibrates_and_predict_applies_the_temperature(colour_run, tmp_path: Path) -> None:
    from cnnkit.evaluate import apply_temperature
    from cnnkit.inference import predict

    run, swapped = colour_run
    copy = shutil.copytree(run.path, tmp_path / "run")  # calibration.json must not leak into other tests
    image = str(swapped[0])
    before = predict([image], run=copy, top_k=3)[0]["predictions"]

    result = runner.invoke(app, ["evaluate", str(copy), "--split", "test", "--calibrate", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    temperature = data["calibration"]["temperature"]
    assert json.loads((copy / "calibration.json").read_text())["temperature"] == temperature
    assert data["headline"]["temperature"] == temperature
    assert data["headline"]["top_k"] == 2 and data["headline"]["top_k_accuracy"] >= 30 / 33  # the honest 30 at least
    assert data["interpretation"]["confused_pairs"][0]["count"] == 1

    after = predict([image], run=copy, top_k=3)[0]["predictions"]
    raw = np.zeros((1, 3))
    for p in before:
        raw[0, p["index"]] = p["probability"]
    expected = apply_temperature(raw, temperature)[0]
    assert [p["probability"] for p in after] == pytest.approx([expected[p["index"]] for p in after], abs=1e-4)

    table = runner.invoke(app, ["evaluate", str(copy), "--split", "test"])
    assert "top-2 accuracy" in table.stdout and "Most confused classes" in table.stdout
    assert "ECE after temperature" in table.stdout


def find_chromium() -> str:
    """The Chromium binary; installed on the fly only as root in CI, otherwise the test skips saying why."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("CI") and os.geteuid() == 0:
        subprocess.run([str(REPO / ".ci" / "install-chromium")], check=False, timeout=600)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("headless Chromium not found: install Debian's 'chromium' package (or run .ci/install-chromium)")
    return found


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_is_self_contained_and_renders_in_chromium(
    colour_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, swapped = colour_run
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    if importlib.util.find_spec("cnnkit.explain") is None:  # a stand-in until the Grad-CAM module lands
        explain = types.ModuleType("cnnkit.explain")
        explain.gradcam_overlay = lambda model, image, class_index, prepared: image.permute(1, 2, 0).numpy()
        monkeypatch.setitem(sys.modules, "cnnkit.explain", explain)

    result = runner.invoke(app, ["report", str(run.path), "--split", "test", "--open"])

    assert result.exit_code == 0, result.output
    page = (run.path / "report.html").read_text(encoding="utf-8")
    assert opened == [(run.path / "report.html").resolve().as_uri()]
    sources = re.findall(r'<img[^>]* src="([^"]*)"', page)
    assert len(sources) >= 10 and all(src.startswith("data:image/") for src in sources)
    assert not re.search(r'(src|href)="(https?:)?//', page), "the report must not reach the network"
    for heading in ("Headline", "Dataset", "Training", "Per-class report", "Worst predictions", "Model card"):
        assert heading in page
    assert all(Path(path).name in page for path in swapped)
    assert "latency per image" in page
    wrong = json.loads((run.path / "interpretation_test.json").read_text())["confidently_wrong"]
    assert page.count('alt="Grad-CAM"') == len(wrong) >= len(swapped)  # one overlay per confidently wrong image

    binary = find_chromium()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("<head>", "<head>" + PAGE_CHECK, 1), encoding="utf-8")
    dom = chromium(binary, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri())
    found = re.search(r'<pre id="page-check">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page check never ran; Chromium said: {dom.stderr[-2000:]}"
    report = json.loads(found.group(1).replace("&quot;", '"'))
    assert report == {"images": len(sources), "broken": [], "problems": []}

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(
        binary,
        tmp_path / "profile",
        "--window-size=1280,2200",
        f"--screenshot={screenshot}",
        (run.path / "report.html").as_uri(),
    )
    assert screenshot.is_file(), shot.stderr[-2000:]
    assert Image.open(screenshot).size == (1280, 2200)
