"""Shared figure style for reports: print-friendly line styles, English/Chinese labels, PNG + PDF output.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot), so nothing here touches global
pyplot state or needs a display. Every series gets its own line style and marker as well as its own
colour, so the plots stay readable when printed in grayscale.
"""
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# (colour, line style, marker): colours differ in lightness, and style + marker differ too.
SERIES_STYLES = (
    ("#000000", "-", "o"),
    ("#0072B2", "--", "s"),
    ("#D55E00", ":", "^"),
    ("#009E73", "-.", "D"),
    ("#6b6b6b", (0, (5, 1, 1, 1, 1, 1)), "v"),
    ("#CC79A7", (0, (1, 2)), "P"),
)
HATCHES = ("", "///", "...", "xx", "\\\\", "oo")

# Substrings of font family names (lower case) that cover Simplified Chinese.
CJK_FONT_HINTS = (
    "noto sans cjk", "noto serif cjk", "noto sans sc", "noto serif sc", "source han sans", "source han serif",
    "wenquanyi", "wqy", "simhei", "simsun", "microsoft yahei", "pingfang", "heiti", "songti", "sarasa",
    "droid sans fallback", "ar pl",
)
# Substrings of font file names, for fonts installed after matplotlib built its font cache.
CJK_FILE_HINTS = ("notosanscjk", "notoserifcjk", "sourcehan", "wqy", "simhei", "simsun", "msyh", "pingfang",
                  "droidsansfallback", "uming", "ukai")

TEXT = {
    "epoch": ("Epoch", "训练轮次"),
    "loss": ("Loss", "损失"),
    "train_loss": ("Train loss", "训练损失"),
    "val_loss": ("Val loss", "验证损失"),
    "val_loss_ema": ("Val loss (EMA)", "验证损失 (EMA)"),
    "lr": ("Learning rate", "学习率"),
    "score": ("Score", "指标值"),
    "val_accuracy": ("Val accuracy", "验证准确率"),
    "val_macro_f1": ("Val macro-F1", "验证宏平均F1"),
    "val_accuracy_ema": ("Val accuracy (EMA)", "验证准确率 (EMA)"),
    "val_macro_f1_ema": ("Val macro-F1 (EMA)", "验证宏平均F1 (EMA)"),
    "best_epoch": ("Best epoch ({})", "最佳轮次 ({})"),
    "loss_curves": ("Loss", "损失曲线"),
    "lr_curve": ("Learning-rate schedule", "学习率曲线"),
    "val_metrics": ("Validation metrics", "验证集指标"),
    "pretrain_loss": ("Pre-training loss (masked patches)", "预训练损失（掩码块）"),
    "true_label": ("True class", "真实类别"),
    "pred_label": ("Predicted class", "预测类别"),
    "counts": ("Counts", "样本数"),
    "row_norm": ("Row-normalised (recall)", "按行归一化（召回率）"),
    "split_val": ("validation (best checkpoint)", "验证集（最佳模型）"),
    "split_test": ("test", "测试集"),
    "confusion": ("Confusion matrix, {}", "混淆矩阵，{}"),
    "roc": ("ROC curve (positive: {})", "ROC 曲线（正类：{}）"),
    "pr": ("Precision-recall curve (positive: {})", "精确率-召回率曲线（正类：{}）"),
    "fpr": ("False positive rate", "假阳性率"),
    "tpr": ("True positive rate", "真阳性率"),
    "precision": ("Precision", "精确率"),
    "recall": ("Recall", "召回率"),
    "chance": ("Chance", "随机猜测"),
    "reliability": ("Reliability (T = {:.2f})", "可靠性图（T = {:.2f}）"),
    "confidence": ("Confidence (max. probability)", "置信度（最大概率）"),
    "bin_accuracy": ("Accuracy in bin", "分箱内准确率"),
    "ideal": ("Perfectly calibrated", "理想校准"),
    "prevalence": ("Prevalence ({:.2f})", "正类比例 ({:.2f})"),
    "set_test": ("Test", "测试集"),
    "set_val": ("Val", "验证集"),
    "fine_breakdown": ("Test predictions per fine class", "测试集各细分类别的预测"),
    "fine_class": ("Fine class (source folder)", "细分类别（源文件夹）"),
    "fraction": ("Fraction of frames", "帧比例"),
    "predicted_as": ("predicted {}", "预测为 {}"),
    "wrong_title": ("Most confidently wrong test frames", "置信度最高的错误测试帧"),
    "wrong_none": ("No misclassified test frames", "测试集没有错误分类的帧"),
    "wrong_panel": ("true {} / pred {}\np={:.3f}", "真实 {} / 预测 {}\np={:.3f}"),
    "missing_image": ("image not found", "找不到图像"),
    "compare_f1": ("Validation macro-F1", "验证集宏平均F1"),
    "compare_title": ("Validation macro-F1 (line: mean; band: ±1 s.d.)", "验证集宏平均F1（线：均值；带：±1 标准差）"),
    "runs_n": ("{} (n={})", "{} (n={})"),
    "compare_test_f1": ("Test macro-F1", "测试集宏平均F1"),
    "compare_test_title": ("Test macro-F1 (dots: runs; bar: mean ± 1 s.d.)", "测试集宏平均F1（点：各次运行；线：均值 ± 1 标准差）"),
    "original": ("Original", "原图"),
    "masked_input": ("Masked input ({:.0%} masked)", "掩码输入（掩码 {:.0%}）"),
    "reconstruction": ("Reconstruction (visible pasted)", "重建（可见块贴回）"),
    "residual": ("|Residual|, masked MAE {:.3f}", "|残差|，掩码区 MAE {:.3f}"),
    "intensity": ("Intensity [0, 1]", "强度 [0, 1]"),
    "frame": ("Frame", "帧"),
    "gradcam_class": ("Grad-CAM: {} (p={:.3f})", "Grad-CAM：{} (p={:.3f})"),
    "cam_value": ("Class activation [0, 1]", "类激活 [0, 1]"),
    "occlusion_class": ("Occlusion: {} (p={:.3f})\nlargest change {:.2f}", "遮挡：{} (p={:.3f})\n最大变化 {:.2f}"),
    "occlusion_value": ("Evidence for (+) / against (-) the class, scaled", "支持 (+) / 反对 (-) 该类的证据（缩放）"),
}


@dataclass(frozen=True)
class Labels:
    """Looks up figure labels in the report language ('en' or 'zh')."""
    lang: str = "en"

    def __call__(self, key: str, *fmt) -> str:
        text = TEXT[key][1 if self.lang == "zh" else 0]
        return text.format(*fmt) if fmt else text


def find_cjk_font(family_names: Sequence[str] | None = None, font_files: Sequence[str] | None = None) -> str | None:
    """Returns the family name of an installed font that covers Chinese, or None.

    Looks in matplotlib's font list first; then in the system font files (a font installed after
    matplotlib built its cache is added on the fly). The arguments exist for tests.
    """
    if family_names is None:
        family_names = sorted({f.name for f in font_manager.fontManager.ttflist})
    for name in family_names:
        if any(hint in name.lower() for hint in CJK_FONT_HINTS):
            return name
    if font_files is None:
        font_files = font_manager.findSystemFonts()
    for path in sorted(font_files):
        if any(hint in Path(path).name.lower().replace("-", "").replace("_", "") for hint in CJK_FILE_HINTS):
            try:
                font_manager.fontManager.addfont(path)
                return font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
    return None


def resolve_language(lang: str, font: str | None = None) -> tuple[Labels, str | None]:
    """Chooses the label language and the CJK font; falls back to English with a one-line warning."""
    if lang not in ("en", "zh"):
        raise ValueError(f"unknown language {lang!r} (use 'en' or 'zh')")
    if lang == "en":
        return Labels("en"), None
    font = font or find_cjk_font()
    if font is None:
        print("warning: --lang zh needs a Chinese font (e.g. apt install fonts-noto-cjk) and matplotlib found "
              "none; labels stay English", file=sys.stderr)
        return Labels("en"), None
    return Labels("zh"), font


@contextmanager
def figure_style(lang: str = "en") -> Iterator[Labels]:
    """Context with the report rcParams; yields the label lookup for the language actually used."""
    labels, font = resolve_language(lang)
    rc = {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "axes.grid": True,
        "grid.color": "0.85",
        "grid.linewidth": 0.6,
        "lines.linewidth": 1.5,
        "lines.markersize": 4,
        "savefig.bbox": "tight",
        "pdf.fonttype": 42,  # embed TrueType so the PDF text stays selectable/editable
        "image.cmap": "gray",
    }
    if font is not None:
        rc["font.family"] = "sans-serif"
        rc["font.sans-serif"] = [font, "DejaVu Sans"]
        rc["axes.unicode_minus"] = False
    with matplotlib.rc_context(rc):
        yield labels


def series_style(index: int, with_marker: bool = True, markevery: int | None = None) -> dict:
    """Keyword arguments for Axes.plot of the index-th series."""
    color, linestyle, marker = SERIES_STYLES[index % len(SERIES_STYLES)]
    style = {"color": color, "linestyle": linestyle}
    if with_marker:
        style["marker"] = marker
        if markevery:
            style["markevery"] = markevery
    return style


def wrap_name(name: str, width: int = 34) -> str:
    """A file name on at most two lines of about `width` characters, broken after a '_' or '-' if possible."""
    if len(name) <= width:
        return name
    if len(name) > 2 * width:
        name = name[:width] + "..." + name[-(width - 3):]
    cut = max(name.rfind("_", 0, width), name.rfind("-", 0, width)) + 1 or width
    return name[:cut] + "\n" + name[cut:]


def integer_ticks(ax) -> None:
    """Whole numbers only on the x axis (epochs)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, out_dir: Path, stem: str, dpi: int = 300) -> list[Path]:
    """Writes <stem>.png (dpi) and <stem>.pdf into out_dir; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=dpi)
    fig.savefig(paths[1])
    return paths
