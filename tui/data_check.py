"""What the data dir holds of the datasets a sweep uses, in words, for the app's Options (the
``prunetui datasets`` check, for the datasets in the form). Imports the engine's data module,
and so torch: call it from a worker thread."""

from __future__ import annotations

from pathlib import Path

from prunetui.core.errors import Namer, PrunetuiError


def data_status(datasets: list[str], data_dir: Path | None, download: bool,
                name: Namer) -> list[tuple[str, bool]]:
    """One line per dataset: where its files are and how many images they hold, or what is
    missing; and whether the line is a problem (missing without download, corrupt)."""
    from prunetui.core.data import current_fingerprint, default_data_dir, find_files

    root = data_dir or default_data_dir()
    out: list[tuple[str, bool]] = []
    for dataset in datasets:
        where = find_files(dataset, root)
        try:
            fp = current_fingerprint(dataset, root)  # reads the files: counts are the truth
        except PrunetuiError as e:
            out.append((f"{dataset}: {e.render(name)}", True))
            continue
        if fp is not None:
            out.append((f"{dataset}: {where} · {fp['train']:,} train / {fp['test']:,} test "
                        "images", False))
        elif download:
            out.append((f"{dataset}: {where}", False))
        else:
            out.append((f"{dataset}: not (all) in {root}, and Download is off", True))
    return out
