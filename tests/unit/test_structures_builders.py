"""Builders: Pt particles on CeO2 (every shape, facet and defect) and defect oxides."""

from __future__ import annotations

import numpy as np
import pytest

from etem.structures.build import build
from etem.structures.column_table import column_table
from etem.structures.io import vacancy_sites
from etem.structures.validation import validate
from tests.structures_fixtures import ceo2_slab, recipe


def _validate(atoms, r):
    p = r.params
    gap = tuple(p["interface_gap_range_A"]) if r.family == "pt_on_ceo2" else None
    validate(atoms, column_table(atoms), int(atoms.info["n_removed"]), 0.7, p["vacuum_z_A"], gap)


def _symbols(atoms):
    return np.array(atoms.get_chemical_symbols())


@pytest.mark.parametrize("shape", ["octahedron", "truncated_octahedron", "cuboctahedron",
                                   "wulff", "decahedron"])
@pytest.mark.parametrize("facet", ["111", "100"])
def test_pt_particle_sits_on_support_for_every_shape(shape, facet):
    r = recipe("pt_on_ceo2", shape=shape, support_facet=facet, defects=[], size_nm=1.5)
    atoms = build(r)
    _validate(atoms, r)
    sym, region = _symbols(atoms), atoms.arrays["region"]
    assert set(sym[region == 1]) == {"Pt"} and set(sym[region == 0]) == {"Ce", "O"}
    n_pt = (region == 1).sum()
    assert 60 <= n_pt <= 200  # 1.5 nm: ~117 atoms, minus the interface truncation
    pt_y = atoms.positions[region == 1, 1]
    support_top = atoms.positions[region == 0, 1].min()
    assert pt_y.max() < support_top  # the particle is above the support (y points down)
    assert atoms.info["support_facet"] == f"({facet})" and atoms.info["zone_axis"] == "[110]"
    assert (sym[region == 0] == "O").sum() == 2 * (sym[region == 0] == "Ce").sum()
    assert np.allclose(atoms.cell.lengths()[:2], r.params["cell_xy_A"])
    assert list(atoms.pbc) == [True, True, False]


def test_cube_on_cube_epitaxy_puts_pt_columns_on_the_zone_axis():
    r = recipe("pt_on_ceo2", shape="octahedron", support_facet="111", defects=[],
               rotation_deg=0.0, tilt_deg=0.0, strain_percent=0.0)
    atoms = build(r)
    table = column_table(atoms)
    metal = table[table.site == "metal"]
    # along [110] the fcc Pt columns are pure, aligned lines 2.775 Å apart
    pt = atoms.positions[atoms.arrays["region"] == 1]
    assert metal["n_sites"].sum() == len(pt)
    spacing = 3.924 / np.sqrt(2)
    z_sorted = np.sort(pt[np.hypot(pt[:, 0] - metal.iloc[0].x_A, pt[:, 1] - metal.iloc[0].y_A)
                          < 0.3, 2])
    if len(z_sorted) > 1:
        assert np.allclose(np.diff(z_sorted), spacing, atol=1e-3)


def test_rotation_strain_and_tilt_are_applied():
    base = dict(shape="cuboctahedron", support_facet="110", defects=[], tilt_deg=0.0)
    a = build(recipe("pt_on_ceo2", **base, rotation_deg=0.0, strain_percent=0.0))
    b = build(recipe("pt_on_ceo2", **base, rotation_deg=0.0, strain_percent=3.0))
    pa, pb = (x.positions[x.arrays["region"] == 1] for x in (a, b))

    def nn(p):
        d = np.linalg.norm(p[:, None] - p[None], axis=2) + np.eye(len(p)) * 99
        return np.median(d.min(axis=1))

    assert nn(pa) == pytest.approx(3.924 / np.sqrt(2), rel=1e-3)
    assert nn(pb) == pytest.approx(1.03 * 3.924 / np.sqrt(2), rel=1e-3)
    c = build(recipe("pt_on_ceo2", **base, rotation_deg=3.0, strain_percent=0.0))
    n_cols = (column_table(c).site == "metal").sum()
    assert n_cols == (column_table(a).site == "metal").sum()  # rotation about the beam
    tilted = {**base, "tilt_deg": 1.0}
    t = build(recipe("pt_on_ceo2", **tilted, rotation_deg=0.0, strain_percent=0.0))
    zt = t.positions[t.arrays["region"] == 1]
    assert not np.allclose(np.sort(zt[:, 1]), np.sort(pa[:, 1]))


def test_twin_step_adatom_and_vacancy_defects():
    base = dict(shape="octahedron", support_facet="111", size_nm=1.5, rotation_deg=0.0,
                tilt_deg=0.0, strain_percent=0.0)
    plain = build(recipe("pt_on_ceo2", **base, defects=[]))
    for defects in (["twin"], ["step"], ["adatom"], ["particle_vacancy", "support_vacancy"]):
        r = recipe("pt_on_ceo2", **base, defects=defects, n_adatoms=2,
                   n_particle_vacancies=2, n_support_vacancies=3, step_layers=1)
        atoms = build(r)
        _validate(atoms, r)
        assert atoms.info["defects"] == "+".join(defects)
        region = atoms.arrays["region"]
        if defects == ["twin"]:
            pt = atoms.positions[region == 1]
            plain_pt = plain.positions[plain.arrays["region"] == 1]
            assert not np.array_equal(np.sort(pt[:, 0]), np.sort(plain_pt[:, 0]))
        if defects == ["step"]:
            assert (region == 0).sum() < (plain.arrays["region"] == 0).sum()
        if defects == ["adatom"]:
            assert (region == 2).sum() == 2
        if "support_vacancy" in defects:
            _, vsym = vacancy_sites(atoms)
            assert sorted(vsym) == ["O"] * 3 + ["Pt"] * 2
            assert int((atoms.arrays["valence"] == 3).sum()) == 6  # 2 Ce3+ per V_O


@pytest.mark.parametrize("material", ["CeO2", "SrTiO3"])
def test_oxide_slab_thickness_and_stoichiometry(material):
    for n_uc in (3, 6):
        r = recipe("oxide", material=material, thickness_uc=n_uc, vacancy_mode="none",
                   vacancy_fraction=0.0)
        atoms = build(r)
        _validate(atoms, r)
        repeat = 5.411 / np.sqrt(2) if material == "CeO2" else 3.905
        assert atoms.info["thickness_nm"] == pytest.approx(n_uc * repeat / 10, abs=1e-4)
        assert (column_table(atoms)["n_sites"] == n_uc).all()
        sym = _symbols(atoms)
        if material == "CeO2":
            assert (sym == "O").sum() == 2 * (sym == "Ce").sum()
        else:
            assert (sym == "Sr").sum() == (sym == "Ti").sum() == (sym == "O").sum() / 3


def _mean_pair_distance(p):
    return np.linalg.norm(p[:, None] - p[None], axis=2).mean()


def test_vacancy_modes_place_vacancies_as_documented():
    frac = 0.08
    out = {}
    for mode in ("random", "clustered", "surface", "column"):
        atoms = ceo2_slab(n_uc=6, mode=mode, fraction=frac, n_clusters=1)
        vpos, vsym = vacancy_sites(atoms)
        n_o = (_symbols(atoms) == "O").sum() + len(vsym)
        assert len(vsym) == round(frac * n_o) and set(vsym) == {"O"}
        out[mode] = (atoms, vpos)
    # clustered vacancies are closer to each other than random ones
    assert _mean_pair_distance(out["clustered"][1]) < 0.8 * _mean_pair_distance(out["random"][1])
    # surface-enriched vacancies lie nearer to the free surfaces
    def surf_depth(atoms, vpos):
        pos = atoms.positions
        return np.minimum.reduce([vpos[:, 1] - pos[:, 1].min(), vpos[:, 2] - pos[:, 2].min(),
                                  pos[:, 2].max() - vpos[:, 2]]).mean()
    assert surf_depth(*out["surface"]) < 0.6 * surf_depth(*out["random"])
    # column mode depletes fewer columns more strongly
    def depleted(atoms):
        t = column_table(atoms)
        return (t["n_vacancies"] > 0).sum()
    assert depleted(out["column"][0]) < 0.6 * depleted(out["random"][0])


def test_defect_free_oxide_has_no_vacancy_labels():
    atoms = ceo2_slab(n_uc=3, mode="none")
    assert vacancy_sites(atoms)[1] == []
    assert (atoms.arrays["valence"][_symbols(atoms) == "Ce"] == 4).all()


@pytest.mark.parametrize("material", ["CeO2", "SrTiO3"])
def test_oxide_particle_is_a_faceted_prism_with_vacuum_around(material):
    r = recipe("oxide", material=material, thickness_uc=4, vacancy_mode="surface",
               vacancy_fraction=0.05, form="particle", particle_radius_frac=0.8)
    atoms = build(r)
    _validate(atoms, r)
    assert atoms.info["particle_shape"] == "faceted_prism"
    assert 2.0 < atoms.info["particle_size_nm"] < 5.0
    pos = atoms.positions
    lx, ly = atoms.cell.lengths()[:2]
    assert pos[:, 0].min() > 3 and pos[:, 1].min() > 3 and pos[:, 1].max() < ly - 3
    centre = np.array([lx / 2, ly / 2])
    assert np.linalg.norm(pos[:, :2].mean(axis=0) - centre) < 2.0
    assert (column_table(atoms)["n_sites"] == 4).all()
    vpos, _ = vacancy_sites(atoms)
    # surface-enriched: vacancies farther from the centre (in projection) than the O sites
    o = pos[_symbols(atoms) == "O"]
    r_v = np.linalg.norm(vpos[:, :2] - centre, axis=1).mean()
    r_o = np.linalg.norm(o[:, :2] - centre, axis=1).mean()
    z_mid = (pos[:, 2].min() + pos[:, 2].max()) / 2
    edge_or_face = (r_v > r_o) or (np.abs(vpos[:, 2] - z_mid).mean()
                                    > np.abs(o[:, 2] - z_mid).mean())
    assert edge_or_face
