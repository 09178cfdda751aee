"""Gallery figure: projected views of a sample of structures, coloured by element and vacancy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from matplotlib.lines import Line2D

from etem.io import atomic_path
from etem.plotting import plt
from etem.structures.io import read_structure, vacancy_sites

#: Colours by element (Ce3+ drawn separately).
COLORS: dict[str, str] = {
    "Pt": "#d4a017", "Ce": "#4f81bd", "O": "#d9534f", "Sr": "#5cb85c", "Ti": "#7f7f7f",
}
CE3_COLOR = "#8e44ad"


def sample_ids(manifest: Any, n: int = 12) -> list[str]:
    """A deterministic, varied sample: one per (family, shape / vacancy mode), then the rest."""
    key = np.where(manifest["family"] == "pt_on_ceo2", manifest["particle_shape"],
                   manifest["material"] + "/" + manifest["vacancy_mode"])
    firsts = manifest.groupby(key, sort=True)["structure_id"].first().tolist()
    rest = [s for s in manifest["structure_id"] if s not in firsts]
    return (firsts + rest)[:n]


def draw(ax: Any, atoms: Atoms, title: str = "") -> None:
    """Projected view (x right, y down as in the image) of one structure on ``ax``."""
    pos = atoms.get_positions()
    sym = np.array(atoms.get_chemical_symbols())
    val = atoms.arrays.get("valence", np.zeros(len(atoms), int))
    order = np.argsort(-pos[:, 2])  # draw deep atoms first
    colors = np.array([COLORS.get(s, "k") for s in sym], dtype=object)
    colors[(sym == "Ce") & (val == 3)] = CE3_COLOR
    sizes = np.where(sym == "O", 4.0, 9.0)
    ax.scatter(pos[order, 0], pos[order, 1], c=list(colors[order]), s=sizes[order],
               linewidths=0, alpha=0.6)
    vpos, _ = vacancy_sites(atoms)
    if len(vpos):
        ax.scatter(vpos[:, 0], vpos[:, 1], s=18, facecolors="none", edgecolors="k",
                   linewidths=0.6)
    lx, ly = atoms.cell.lengths()[:2]
    ax.set_xlim(0, lx)
    ax.set_ylim(ly, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def gallery_figure(manifest: Any, root: str | os.PathLike[str], n: int = 12) -> Any:
    """Matplotlib figure of ``n`` structures of ``manifest`` (paths relative to ``root``)."""
    ids = sample_ids(manifest, n)
    ncol = 4
    nrow = max(1, int(np.ceil(len(ids) / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.5 * nrow + 0.4), squeeze=False)
    rows = manifest.set_index("structure_id")
    for ax, sid in zip(axes.ravel(), ids, strict=False):
        r = rows.loc[sid]
        atoms = read_structure(Path(root) / r["path"])
        if r["family"] == "pt_on_ceo2":
            title = (f"{sid} {r['particle_shape']} {r['particle_size_nm']:g} nm on "
                     f"{r['support_facet']}\n{r['defects']}")
        else:
            title = (f"{sid} {r['material']} {r['zone_axis']} {r['thickness_unit_cells']} uc\n"
                     f"{r['vacancy_mode']}: {r['n_vacancies']} V_O")
        draw(ax, atoms, title)
    for ax in axes.ravel()[len(ids):]:
        ax.axis("off")
    handles = [Line2D([], [], marker="o", ls="", color=c, label=e) for e, c in COLORS.items()]
    handles.append(Line2D([], [], marker="o", ls="", color=CE3_COLOR, label="Ce3+"))
    handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="k", label="vacancy"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7,
               frameon=False)
    fig.suptitle("etem structure library: projections along the beam (x right, y down)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig


def write_gallery(manifest: Any, root: str | os.PathLike[str], path: str | os.PathLike[str],
                  n: int = 12) -> Any:
    """Write the gallery PNG atomically; returns the figure (caller closes it)."""

    fig = gallery_figure(manifest, root, n)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png", metadata={"Software": None})
    return fig
