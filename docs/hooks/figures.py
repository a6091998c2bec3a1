"""MkDocs hook: publish the committed result figures (``benchmarks/results/*.png``) with the site.

They are added as ``assets/results/NAME.png`` without copying them into ``docs/``: the results pages link
``../assets/results/NAME.png``, and the README links the same files in ``benchmarks/results/``.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    results = Path(config["config_file_path"]).resolve().parent / "benchmarks" / "results"
    for png in sorted(results.glob("*.png")):
        files.append(File.generated(config, f"assets/results/{png.name}", abs_src_path=str(png)))
    return files
