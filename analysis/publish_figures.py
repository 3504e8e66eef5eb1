"""Regenerate the README's committed headline figures (docs/figures/) from one or more study stores.

    python analysis/publish_figures.py bench/out/goodai bench/out/paper_studies bench/out/willis
    make figures                                   # the stores of FIGURE_STORES (default: every bench/out study)
    python analysis/publish_figures.py runs --figures-dir /tmp/figures
    python analysis/publish_figures.py --dataset fashion_mnist bench/stores/goodai bench/stores/strength

Runs the report (analysis/make_report.py) on each store into a temporary folder and copies the headline PNGs it
made (`HEADLINE`) into --figures-dir, the first store that makes a figure giving it (list the GoodAI study's store
first: the other studies' stores also draw sections 1-3 from their GTN runs); prints what came from where and which
headline figures no store produced. A store that does not exist is an error before
any report runs.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ANALYSIS = Path(__file__).resolve().parent
sys.path.insert(0, str(ANALYSIS.parent))

from analysis import make_report  # noqa: E402

# The figures the README and BENCHMARKS.md show, by the report section that draws them.
HEADLINE = ("test_accuracy", "ablation_boxplots", "curriculum_learned",                 # GoodAI's study (1-3)
            "curricula_accuracy", "curricula_pictures", "baselines_accuracy", "baselines_pictures",
            "paper_shape_accuracy",                                                      # the paper's (5-7)
            "normalisation_accuracy", "transfer", "robustness",                          # Willis's (8-10)
            "nas_proxy", "gan_training", "gan_accuracy", "gan_pictures",                 # NAS proxy, GAN (11-12)
            "strength_drop")                                                             # the strength study (13)
# The figures of the sections that read one dataset (GoodAI's study and the strength study): published for another
# dataset too, as <name>_<dataset>.png.
PER_DATASET = ("test_accuracy", "ablation_boxplots", "curriculum_learned", "strength_drop")


def publish(stores: list[Path], figures_dir: Path, dataset: str = "mnist") -> dict[str, Path]:
    """Report on every store and copy its headline PNGs to `figures_dir`; {figure name: the store it came from}.
    For a dataset other than MNIST only the `PER_DATASET` figures, named <name>_<dataset>.png."""
    missing = [store for store in stores if not store.is_dir()]
    if missing:
        raise SystemExit(f"no such store: {', '.join(map(str, missing))} (expected file-store folders)")
    figures_dir.mkdir(parents=True, exist_ok=True)
    sources = {}
    for store in stores:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            code = make_report.main(["--runs-dir", str(store), "--figures-dir", str(out / "figures"),
                                     "--output", str(out / "report.html"), "--dataset", dataset])
            if code != 0:
                raise SystemExit(f"the report on {store} failed (exit {code})")
            for name in HEADLINE if dataset == "mnist" else PER_DATASET:
                made = out / "figures" / f"{name}.png"
                published = name if dataset == "mnist" else f"{name}_{dataset}"
                if made.exists() and published not in sources:
                    shutil.copyfile(made, figures_dir / f"{published}.png")
                    sources[published] = store
    return sources


def main(argv: list[str] | None = None) -> int:
    """Publish the headline figures and say where each came from."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stores", nargs="+", type=Path, help="file-store folders, in order (the first to make a figure gives it)")
    parser.add_argument("--figures-dir", type=Path, default=ANALYSIS.parent / "docs" / "figures")
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist",
                        help="mnist: every headline figure; another: those of PER_DATASET, as <name>_<dataset>.png")
    args = parser.parse_args(argv)
    sources = publish(args.stores, args.figures_dir, args.dataset)
    names = HEADLINE if args.dataset == "mnist" else [f"{name}_{args.dataset}" for name in PER_DATASET]
    for name in names:
        print(f"{name + '.png':<36} " + (f"from {sources[name]}" if name in sources else "not made by any store"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
