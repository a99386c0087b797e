"""One self-contained HTML page that answers "how good is the model really?" at a glance.

Every picture is inlined as a base64 data URI and the styling is embedded, so ``report.html`` can be
mailed, archived or opened offline and still shows everything. The headline numbers come first; the
evidence (data, curves, per-class scores, the worst mistakes, calibration, the model itself) follows.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import cnnkit
from cnnkit.data.folders import DatasetSplits
from cnnkit.evaluate.analysis import Analysis, analyze, run_dataset
from cnnkit.evaluate.curves import CurveLandmarks, find_landmarks
from cnnkit.evaluate.dataset_views import DatasetViews, crops_of, save_dataset_views, to_hwc
from cnnkit.evaluate.interpret import PredictionCase
from cnnkit.evaluate.metrics import Evaluation
from cnnkit.evaluate.model_card import ModelCard, model_card
from cnnkit.evaluate.plots import plot_curves
from cnnkit.fileio import write_json, write_text
from cnnkit.run import Run, load_run

THUMBNAIL_SIZE = 160
MAX_BOX_CASES = 18  # images in the gallery of worst boxes

STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --accent: #2f6fde; --bad: #c53030; --good: #2f855a;
        --card: #f7f9fc; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #fff; }
header { background: #102a43; color: #fff; padding: 28px 0 22px; }
header .wrap, main { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 600; }
header p { margin: 0; color: #bcccdc; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); z-index: 1; }
nav .wrap { max-width: 1120px; margin: 0 auto; padding: 8px 24px; display: flex; gap: 18px; flex-wrap: wrap; }
nav a { color: var(--accent); text-decoration: none; font-size: 14px; }
section { padding: 26px 0 10px; border-bottom: 1px solid var(--line); }
h2 { font-size: 20px; margin: 0 0 12px; }
h3 { font-size: 16px; margin: 18px 0 8px; }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 14px; }
.metric { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; }
.metric .value { font-size: 34px; font-weight: 650; letter-spacing: -0.5px; }
.metric .label { color: var(--muted); font-size: 13px; text-transform: uppercase; letter-spacing: 0.6px; }
.metric .note { color: var(--muted); font-size: 13px; }
.note-box { background: #fffbea; border-left: 4px solid #f0b429; padding: 10px 14px; margin: 12px 0; }
.muted { color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
.narrow { max-width: 560px; }
th:first-child, td:first-child { text-align: left; }
table.facts td { text-align: left; white-space: normal; }
table.facts td:first-child { color: var(--muted); white-space: nowrap; }
th { background: var(--card); font-weight: 600; }
tr.weakest td { background: #fff5f5; }
.bar { display: inline-block; height: 8px; border-radius: 4px; background: var(--accent); vertical-align: middle;
       margin-right: 6px; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 13px; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 18px; align-items: start; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.case { width: 172px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 6px;
        font-size: 12px; }
.case img { width: 160px; height: 160px; object-fit: contain; image-rendering: pixelated; border-radius: 4px;
            background: #000; }
.case .labels { font-weight: 600; margin-top: 4px; }
.case .wrong { color: var(--bad); }
.case .right { color: var(--good); }
.case .file { color: var(--muted); overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 13px; padding: 18px 0 40px; }
"""


def _escape(value: Any) -> str:
    return html.escape(str(value))


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _image_uri(image: np.ndarray) -> str:
    """An (H, W, C) uint8 image as a JPEG data URI, no larger than a thumbnail."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(path: Path, caption: str) -> str:
    text = _escape(caption)
    return f'<figure><img src="{_png_uri(path)}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _table(header: list[str], rows: list[list[Any]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_escape(cell)}</th>" for cell in header)
    body = "".join(
        f'<tr class="{css}">' + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
        for row, css in zip(rows, row_classes or [""] * len(rows), strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _rounded(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _gradcam_overlay() -> Callable[..., Any] | None:
    """``cnnkit.explain.gradcam_overlay`` when that module is installed; the report works without it."""
    try:
        from cnnkit.explain import gradcam_overlay
    except ImportError:
        return None
    return gradcam_overlay


def _thumbnails(run: Run, dataset: DatasetSplits, analysis: Analysis) -> tuple[dict[str, str], dict[str, str]]:
    """Data URIs of the gallery images, plus Grad-CAM overlays of the confidently wrong ones when available."""
    interpretation = analysis.interpretation
    cases = interpretation.confidently_wrong + interpretation.hesitant
    crops = crops_of(dataset.split(analysis.evaluation.split), sorted({c.source for c in cases}), run.preprocessing)
    plain = {source: _image_uri(to_hwc(image)) for source, image in crops.items()}
    overlay = _gradcam_overlay()
    heatmaps: dict[str, str] = {}
    if overlay is None:
        return plain, heatmaps
    model = run.load_model()
    try:
        for case in interpretation.confidently_wrong:
            class_index = analysis.evaluation.classes.index(case.predicted_label)
            heatmaps[case.source] = _image_uri(overlay(model, crops[case.source], class_index, prepared=True))
    except Exception as exc:  # an optional, still-evolving module must never cost the user the whole report
        warnings.warn(f"Grad-CAM overlays left out of the report: {exc}", stacklevel=2)
        heatmaps = {}
    return plain, heatmaps


def _headline_section(analysis: Analysis) -> str:
    h = analysis.headline()
    evaluation = analysis.evaluation
    calibrated = h["calibrated_expected_calibration_error"]
    ece_note = (
        f"{_number(calibrated)} after temperature {h['temperature']:.2f}"
        if calibrated is not None
        else "lower is better; 0 = confidence matches accuracy"
    )
    cards = [
        ("Accuracy", _percent(h["accuracy"]), f"{len(evaluation.labels)} {evaluation.split} images"),
        ("Macro F1", _number(h["macro_f1"]), "every class counts the same"),
        (f"Top-{h['top_k']} accuracy", _percent(h["top_k_accuracy"]), f"true class among the {h['top_k']} most likely"),
        ("Calibration error (ECE)", _number(h["expected_calibration_error"]), ece_note),
    ]
    body = "".join(
        f'<div class="metric"><div class="label">{_escape(label)}</div><div class="value">{value}</div>'
        f'<div class="note">{_escape(note)}</div></div>'
        for label, value, note in cards
    )
    return f'<section id="headline"><h2>Headline</h2><div class="headline">{body}</div></section>'


def _dataset_section(views: DatasetViews, augment: str) -> str:
    summary = views.summary
    splits = list(summary.counts)
    rows = [[_escape(name)] + [summary.counts[s][i] for s in splits] for i, name in enumerate(summary.classes)]
    rows.append(["<b>total</b>"] + [f"<b>{sum(summary.counts[s])}</b>" for s in splits])
    warning = (
        f'<div class="note-box">The training classes are imbalanced: the largest has {summary.imbalance:.1f}× as many '
        "images as the smallest. Accuracy can then look good while a small class is mostly missed; read the "
        "per-class recall below, and consider more images, oversampling or class weights for the small classes.</div>"
        if summary.is_imbalanced
        else f'<p class="muted">Largest over smallest training class: {summary.imbalance:.2f}× (balanced enough).</p>'
    )
    notes = "".join(f"<li>{_escape(note)}</li>" for note in summary.notes)
    augmented_caption = (
        "This run trained without augmentation: every copy equals the original"
        if augment == "none"
        else "Augmentation: one image per row, as evaluated, then as training saw it"
    )
    return (
        f'<section id="dataset"><h2>Dataset</h2><p><b>{_escape(summary.name)}</b>, {len(summary.classes)} classes, '
        f"layout {_escape(summary.layout)}.</p>{f'<ul>{notes}</ul>' if notes else ''}"
        f'<div class="columns"><div>{_table(["class", *splits], rows)}{warning}</div>'
        f"<div>{_figure(views.files['class_counts'], 'Images per class and split')}</div></div>"
        f'<div class="columns"><div>{_figure(views.files["samples"], "Random training images, as the model sees them")}'
        f"</div><div>{_figure(views.files['augmented'], augmented_caption)}</div></div></section>"
    )


def kept_model_text(metrics: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """Which epoch and stage the kept weights come from, and whether fine-tuning was thrown away."""
    epoch, stage = metrics.get("best_epoch"), metrics.get("best_stage")
    if epoch is None or stage is None:
        return ""
    accuracy = metrics.get("val_accuracy")
    scored = f" (validation accuracy {accuracy:.1%})" if accuracy is not None else ""
    text = f"The kept model is the one of epoch {int(epoch)}, {stage} stage{scored}: the best validation accuracy."
    fine_tuned = sum(1 for row in history if row.get("stage") == "fine_tune")
    if stage == "head" and fine_tuned:
        text += (
            f" Fine-tuning ran for {fine_tuned} epoch(s) but never beat the head stage, so its weights were "
            "discarded: this model is the frozen base with the trained head."
        )
    return text


def _training_section(curves: Path | None, landmarks: CurveLandmarks, kept: str = "") -> str:
    if curves is None:
        return '<section id="training"><h2>Training</h2><p class="muted">This run has no history.csv.</p></section>'
    caption = "Loss and accuracy per epoch; shaded: likely overfitting; dotted: lowest validation loss"
    kept_html = f"<p><b>{_escape(kept)}</b></p>" if kept else ""
    return (
        f'<section id="training"><h2>Training</h2>{kept_html}<p>{_escape(landmarks.describe())}</p>'
        f"{_figure(curves, caption)}</section>"
    )


def _metrics_section(analysis: Analysis) -> str:
    evaluation, interpretation = analysis.evaluation, analysis.interpretation
    report = evaluation.report
    overall = [
        ["accuracy", _percent(evaluation.accuracy)],
        [f"top-{interpretation.top_k} accuracy", _percent(interpretation.top_k_accuracy)],
        [
            "macro precision / recall / F1",
            " / ".join(_number(report["macro avg"][k]) for k in ("precision", "recall", "f1-score")),
        ],
        [
            "weighted precision / recall / F1",
            " / ".join(_number(report["weighted avg"][k]) for k in ("precision", "recall", "f1-score")),
        ],
        ["macro ROC AUC (one vs rest)", _number(interpretation.macro_roc_auc)],
        ["expected calibration error (15 bins)", _number(interpretation.expected_calibration_error)],
        ["images", str(len(evaluation.labels))],
    ]
    pairs = [
        [_escape(p.true_label), _escape(p.predicted_label), p.count, _percent(p.share)]
        for p in interpretation.confused_pairs
    ]
    pairs_table = (
        _table(["true class", "predicted as", "images", "share of true class"], pairs)
        if pairs
        else '<p class="muted">No mistakes on this split.</p>'
    )
    return (
        f'<section id="metrics"><h2>Metrics on the {_escape(evaluation.split)} split</h2>'
        f'<div class="columns"><div>{_table(["metric", "value"], overall)}'
        f"<h3>Most confused classes</h3>{pairs_table}</div>"
        f"<div>{_figure(analysis.files['confusion_matrix'], 'Confusion matrix: rows are true classes')}</div></div>"
        "</section>"
    )


def _per_class_section(analysis: Analysis, train_counts: list[int]) -> str:
    evaluation, interpretation = analysis.evaluation, analysis.interpretation
    f1 = {name: evaluation.report[name]["f1-score"] for name in evaluation.classes}
    weakest = min(f1, key=f1.get)
    rows, css = [], []
    for index, name in enumerate(evaluation.classes):
        row = evaluation.report[name]
        bar = f'<span class="bar" style="width:{row["f1-score"] * 80:.0f}px"></span>{_number(row["f1-score"])}'
        rows.append(
            [
                _escape(name),
                _number(row["precision"]),
                _number(row["recall"]),
                bar,
                int(row["support"]),
                _number(interpretation.roc_auc[name]),
                train_counts[index],
            ]
        )
        css.append("weakest" if name == weakest and f1[weakest] < 1 else "")
    advice = (
        '<p class="muted">Every class is classified perfectly on this split.</p>'
        if f1[weakest] == 1
        else f"<p>Lowest F1: <b>{_escape(weakest)}</b> ({f1[weakest]:.3f}). Precision asks how many images called "
        f"{_escape(weakest)} really are; recall asks how many {_escape(weakest)} images were found. More and better "
        "training images of the weakest class are usually the first thing to try.</p>"
    )
    return (
        '<section id="classes"><h2>Per-class report</h2>'
        f"{_table(['class', 'precision', 'recall', 'F1', 'support', 'ROC AUC', 'train images'], rows, css)}{advice}"
        f'<div class="narrow">{_figure(analysis.files["roc_curves"], "ROC curves, one class against the rest")}</div>'
        "</section>"
    )


def _box_cases(run: Run, dataset: DatasetSplits, evaluation: Evaluation) -> str:
    """The worst boxes first: each image with its true box (green) and predicted box (red)."""
    from torch.nn import functional

    from cnnkit.evaluate.boxes import draw_boxes, paired_iou

    predicted, truth = torch.from_numpy(evaluation.boxes), torch.from_numpy(evaluation.true_boxes)
    iou = paired_iou(predicted, truth)
    worst = iou.argsort()[:MAX_BOX_CASES].tolist()
    sources = [evaluation.sources[i] for i in worst]
    crops = crops_of(dataset.split(evaluation.split), sources, run.preprocessing)
    items, classes = [], evaluation.classes
    for i, source in zip(worst, sources, strict=True):
        image = functional.interpolate(crops[source][None].float(), size=THUMBNAIL_SIZE, mode="bilinear")[0]
        drawn = draw_boxes(image.round().clamp(0, 255).byte(), [(truth[i] * THUMBNAIL_SIZE).tolist(),
                           (predicted[i] * THUMBNAIL_SIZE).tolist()], None, ["lime", "red"])  # fmt: skip
        label, guess = classes[evaluation.labels[i]], classes[int(evaluation.probabilities[i].argmax())]
        verdict = "right" if label == guess and iou[i] >= 0.5 else "wrong"
        items.append(
            f'<div class="case"><img src="{_image_uri(to_hwc(drawn))}" alt="{_escape(Path(source).name)}">'
            f'<div class="labels {verdict}">IoU {iou[i]:.2f} · {_escape(label)} → {_escape(guess)}</div>'
            f'<div class="file" title="{_escape(source)}">{_escape("/".join(Path(source).parts[-2:]))}</div></div>'
        )
    return f'<div class="gallery">{"".join(items)}</div>'


def _boxes_section(run: Run, dataset: DatasetSplits, evaluation: Evaluation) -> str:
    """Localization runs: IoU scores overall and per class, and the gallery of the worst boxes."""
    scores = evaluation.localization
    rows = [
        [_escape(name), _percent(row["accuracy"]), _number(row["mean_iou"]), _percent(row["iou50"]),
         _percent(row["iou75"]), _percent(row["both_right"]), row["num_images"]]
        for name, row in [*scores["per_class"].items(), ("<b>all</b>", scores)] if row["num_images"]
    ]  # fmt: skip
    header = ["class", "accuracy", "mean IoU", "IoU ≥ 0.5", "IoU ≥ 0.75", "both right", "images"]
    return (
        '<section id="boxes"><h2>Boxes</h2><p>Intersection over union (IoU) of each predicted box with the '
        "annotated one; <i>both right</i>: class right and IoU ≥ 0.5.</p>"
        f"{_table(header, rows)}<h3>Worst boxes first</h3><p>Green: the annotated box; red: the prediction.</p>"
        f"{_box_cases(run, dataset, evaluation)}</section>"
    )


def _gallery_html(cases: list[PredictionCase], plain: dict[str, str], heatmaps: dict[str, str]) -> str:
    if not cases:
        return '<p class="muted">None on this split.</p>'
    items = []
    for case in cases:
        verdict = "right" if case.correct else "wrong"
        heatmap = f'<img src="{heatmaps[case.source]}" alt="Grad-CAM">' if case.source in heatmaps else ""
        items.append(
            f'<div class="case"><img src="{plain[case.source]}" alt="{_escape(Path(case.source).name)}">{heatmap}'
            f'<div class="labels {verdict}">{_escape(case.true_label)} → {_escape(case.predicted_label)}</div>'
            f"<div>p = {case.probability:.3f}, runner-up {_escape(case.runner_up_label)} "
            f"(margin {case.margin:.3f})</div>"
            f'<div class="file" title="{_escape(case.source)}">{_escape("/".join(Path(case.source).parts[-2:]))}</div>'
            "</div>"
        )
    return f'<div class="gallery">{"".join(items)}</div>'


def _hesitant_text(analysis: Analysis) -> str:
    interpretation = analysis.interpretation
    margin, count, shown = interpretation.hesitant_margin, interpretation.hesitant_count, interpretation.hesitant
    total = len(analysis.evaluation.labels)
    if not count:
        return (
            f"<p>No image was hesitant: for each of the {total} images the two most likely classes were at least "
            f"{margin:g} apart in probability.</p>"
        )
    showing = f"; the {len(shown)} closest are shown" if len(shown) < count else ""
    return (
        f"<p>{count} of {total} images were hesitant: the two most likely classes less than {margin:g} apart in "
        f"probability, right or wrong. That is where the classes overlap{showing}.</p>"
    )


def _mistakes_section(analysis: Analysis, plain: dict[str, str], heatmaps: dict[str, str]) -> str:
    interpretation = analysis.interpretation
    heatmap_note = (
        " The second picture shows where the model looked for the wrong class (Grad-CAM)." if heatmaps else ""
    )
    hesitant = _gallery_html(interpretation.hesitant, plain, heatmaps={}) if interpretation.hesitant else ""
    return (
        '<section id="mistakes"><h2>Worst predictions</h2>'
        "<h3>Confidently wrong</h3><p>Wrong answers the model was surest about. Some reveal a blind spot; others "
        f"turn out to carry the wrong label in the dataset: check them first.{heatmap_note}</p>"
        f"{_gallery_html(interpretation.confidently_wrong, plain, heatmaps)}"
        f"<h3>Hesitant</h3>{_hesitant_text(analysis)}{hesitant}</section>"
    )


def _calibration_section(analysis: Analysis) -> str:
    calibration = analysis.calibration
    ece = analysis.interpretation.expected_calibration_error
    if calibration is None:
        fitted = (
            "<p>No temperature fitted yet: <code>cnnkit evaluate RUN --calibrate</code> fits one on the validation "
            "split, and prediction applies it from then on.</p>"
        )
    else:
        fitted = (
            f"<p>Temperature <b>{calibration.temperature:.3f}</b>, fitted on {calibration.num_images} "
            f"{_escape(calibration.split)} images (negative log-likelihood {calibration.nll_before:.3f} → "
            f"{calibration.nll_after:.3f}); prediction divides the logits by it. On this split the ECE goes from "
            f"{ece:.3f} to {analysis.calibrated_ece:.3f}.</p>"
        )
    return (
        '<section id="calibration"><h2>Calibration</h2><div class="columns"><div><p>Is a 90% prediction right 90% '
        "of the time? Expected calibration error (ECE, 15 bins) is the average gap between confidence and accuracy: "
        f"<b>{ece:.3f}</b>.</p>{fitted}</div><div>"
        f"{_figure(analysis.files['reliability'], 'Bars below the diagonal: over-confident; above: under-confident')}"
        "</div></div></section>"
    )


def _framing(preprocessing: dict[str, Any]) -> str:
    if preprocessing.get("resize") == "squash":  # localization: nothing of the object's box is cropped away
        return "whole image squashed to the square"
    return f"center crop {preprocessing['crop_pct']:g} of the short side"


def _model_section(card: ModelCard) -> str:
    p = card.preprocessing
    rows = [
        ["architecture", f"<b>{_escape(card.architecture)}</b> — {_escape(card.description)}"],
        ["ImageNet-pretrained start", "yes" if card.pretrained else "no"],
        ["starting weights", _escape(card.starting_weights)],
        ["parameters", f"{card.parameters:,}"],
        ["weights file", f"{card.weights_bytes / 1e6:.2f} MB (model.safetensors)"],
        ["input", f"{card.input_size} × {card.input_size} px, {card.channels} channel(s)"],
        [
            "preprocessing",
            _escape(
                f"{_framing(p)}, {p['interpolation']} resize, mean {_rounded(p['mean'])}, std {_rounded(p['std'])}"
            ),
        ],
        ["training", _escape(", ".join(f"{k} {v}" for k, v in card.training.items() if v is not None))],
        ["temperature", f"{card.temperature:.3f}"],
        ["latency per image", f"<b>{card.latency_ms:.1f} ms</b> (median, batch of 1, {_escape(card.latency_device)})"],
    ]
    facts = "".join(f"<tr><td>{_escape(key)}</td><td>{value}</td></tr>" for key, value in rows)
    return f'<section id="model"><h2>Model card</h2><table class="facts"><tbody>{facts}</tbody></table></section>'


def render_report(
    run: Run,
    analysis: Analysis,
    views: DatasetViews,
    curves: Path | None,
    landmarks: CurveLandmarks,
    card: ModelCard,
    thumbnails: tuple[dict[str, str], dict[str, str]],
    dataset: DatasetSplits,
) -> str:
    """The whole page as one HTML string."""
    sections = [
        _headline_section(analysis),
        _dataset_section(views, run.facts.augment),
        _training_section(curves, landmarks, kept_model_text(run.metrics, run.history if curves else [])),
        _metrics_section(analysis),
        *([_boxes_section(run, dataset, analysis.evaluation)] if analysis.evaluation.localization else []),
        _per_class_section(analysis, views.summary.counts["train"]),
        _mistakes_section(analysis, *thumbnails),
        _calibration_section(analysis),
        _model_section(card),
    ]
    links = [
        ("headline", "Headline"),
        ("dataset", "Dataset"),
        ("training", "Training"),
        ("metrics", "Metrics"),
        *([("boxes", "Boxes")] if analysis.evaluation.localization else []),
        ("classes", "Per class"),
        ("mistakes", "Worst predictions"),
        ("calibration", "Calibration"),
        ("model", "Model card"),
    ]
    nav = "".join(f'<a href="#{anchor}">{label}</a>' for anchor, label in links)
    created = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    subtitle = f"{card.architecture} on {views.summary.name}, {analysis.evaluation.split} split · {created}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>cnnkit report: {_escape(run.path.name)}</title><style>{STYLE}</style></head><body>"
        f'<header><div class="wrap"><h1>How good is {_escape(run.path.name)} really?</h1>'
        f"<p>{_escape(subtitle)}</p></div></header>"
        f'<nav><div class="wrap">{nav}</div></nav><main>{"".join(sections)}'
        f"<footer>Written by cnnkit {cnnkit.__version__} from {_escape(run.path)}. Every image is embedded; "
        "this page needs no network.</footer></main></body></html>\n"
    )


def build_report(
    run: str | Path | Run, split: str | None = None, data: str | Path | DatasetSplits | None = None
) -> Path:
    """Analyse ``run`` on ``split`` and write ``report.html`` (and the JSON and figures behind it) into the run."""
    run = run if isinstance(run, Run) else load_run(run)
    dataset = run_dataset(run, data)
    analysis = analyze(run, data=dataset, split=split, save=True)
    views = save_dataset_views(dataset, run.preprocessing, run.facts.augment, run.path)
    history = run.history if (run.path / "history.csv").is_file() else []
    landmarks = find_landmarks(history)
    curves = run.path / "curves.png" if history else None
    if curves is not None:
        plot_curves(history, curves)
        write_json(run.path / "curves.json", landmarks.to_dict())
    card = model_card(run)
    write_json(run.path / "model_card.json", card.to_dict())
    page = render_report(run, analysis, views, curves, landmarks, card, _thumbnails(run, dataset, analysis), dataset)
    path = run.path / "report.html"
    write_text(path, page)
    return path
