"""Config of the structures stage: the library of atomic models (ASE)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from etem.config.base import Fraction, Positive, PositiveInt, PositiveRange, StrictModel


class ParticleShape(StrEnum):
    """Pt particle shapes built with ``ase.cluster``."""

    octahedron = "octahedron"
    truncated_octahedron = "truncated_octahedron"
    cuboctahedron = "cuboctahedron"
    wulff = "wulff"
    decahedron = "decahedron"


class SupportFacet(StrEnum):
    """CeO2 support surface facing the particle (Miller indices)."""

    f111 = "111"
    f110 = "110"
    f100 = "100"


class OxideMaterial(StrEnum):
    """Defect-oxide materials."""

    CeO2 = "CeO2"
    SrTiO3 = "SrTiO3"


class VacancyMode(StrEnum):
    """How oxygen vacancies are placed in an oxide."""

    none = "none"
    random = "random"
    clustered = "clustered"
    surface = "surface"
    column = "column"


class DefectKind(StrEnum):
    """Defect variants of a Pt/CeO2 structure."""

    twin = "twin"
    step = "step"
    adatom = "adatom"
    particle_vacancy = "particle_vacancy"
    support_vacancy = "support_vacancy"


class PtOnCeO2Config(StrictModel):
    """Pt nanoparticles on CeO2 supports."""

    count: int = Field(540, ge=0, description="number of Pt/CeO2 structures")
    shapes: list[ParticleShape] = Field(default_factory=lambda: list(ParticleShape), min_length=1)
    sizes_nm: list[Positive] = Field(
        default_factory=lambda: [1.5, 2.0, 2.5, 3.0, 3.5], min_length=1,
        description="particle diameters (sphere of equal volume) [nm]; must fit the cell",
    )
    support_facets: list[SupportFacet] = Field(
        default_factory=lambda: list(SupportFacet), min_length=1
    )
    zone_axis: str = Field("110", description="beam direction of the support, Miller indices")
    cell_xy_A: tuple[Positive, Positive] = Field(
        (51.2, 51.2), description="lateral cell size (x, y) [Å]; the image field of view"
    )
    support_thickness_A: float = Field(
        20.0, gt=0, description="support height below the particle, in the image plane [Å]"
    )
    support_depth_nm: PositiveRange = Field(
        (2.0, 4.0), description="support extent along the beam (min, max) [nm]"
    )
    max_rotation_deg: float = Field(
        3.0, ge=0, le=45, description="max particle rotation about the beam [deg]"
    )
    max_tilt_deg: float = Field(
        1.0, ge=0, le=10, description="max particle tilt off the zone axis (about x) [deg]"
    )
    max_truncation: float = Field(
        0.3, ge=0, le=0.6,
        description="max fraction of the particle height cut off at the interface",
    )
    max_strain_percent: float = Field(3.0, ge=0, le=10, description="max radial strain [%]")
    defect_probability: float = Field(0.5, ge=0, le=1, description="chance of a defect variant")
    defect_kinds: list[DefectKind] = Field(
        default_factory=lambda: list(DefectKind), description="defects a variant may get"
    )
    lateral_margin_A: float = Field(
        2.0, ge=0, description="vacuum between the crystal and the cell edges along x [Å]"
    )
    interface_gap_A: PositiveRange = Field(
        (1.8, 3.2), description="allowed particle-support gap (min, max) [Å]"
    )
    vacuum_z_A: float = Field(5.0, ge=0, description="vacuum above/below along the beam [Å]")

    @model_validator(mode="after")
    def _check_ranges(self) -> PtOnCeO2Config:
        if not self.interface_gap_A[0] < self.interface_gap_A[1]:
            raise ValueError("interface_gap_A: need min < max")
        if not 0 < self.support_depth_nm[0] <= self.support_depth_nm[1]:
            raise ValueError("support_depth_nm: need 0 < min <= max")
        room = min(self.cell_xy_A) - 12.0  # support (>= 8 Å) + gap + top margin
        for size in self.sizes_nm:
            if not 0.8 <= size or 10.0 * size > room:
                raise ValueError(
                    f"sizes_nm: {size} nm does not fit a {min(self.cell_xy_A)} Å cell "
                    f"(need 0.8 <= size <= {room / 10:.1f} nm)"
                )
        return self


class OxideConfig(StrictModel):
    """Defect oxides (CeO2-type and at least one other) with oxygen vacancies."""

    count: int = Field(360, ge=0, description="number of oxide structures")
    materials: list[OxideMaterial] = Field(
        default_factory=lambda: list(OxideMaterial), min_length=1
    )
    thickness_unit_cells: list[PositiveInt] = Field(
        default_factory=lambda: [3, 4, 5, 6, 8, 10, 12], min_length=1,
        description="slab thickness along the beam [unit cells]",
    )
    vacancy_modes: list[VacancyMode] = Field(
        default_factory=lambda: list(VacancyMode), min_length=1
    )
    vacancy_fraction_max: float = Field(
        0.15, ge=0, le=0.5, description="max fraction of O removed"
    )
    crystal_height_fraction: tuple[Fraction, Fraction] = Field(
        (0.55, 0.85),
        description="fraction of the cell height (y) filled by the crystal (min, max); the rest "
        "is vacuum above its free surface",
    )
    reduced_ce_per_vacancy: int = Field(
        2, ge=0, le=2, description="Ce labelled Ce3+ per O vacancy (nearest Ce)"
    )
    particle_fraction: float = Field(
        0.3, ge=0, le=1,
        description="fraction of oxide structures that are faceted particles (prisms along the "
        "beam) instead of slabs with one free surface",
    )
    lateral_margin_A: float = Field(
        2.0, ge=0, description="vacuum between the crystal and the cell edges along x [Å]"
    )
    cell_xy_A: tuple[Positive, Positive] = Field(
        (51.2, 51.2), description="lateral cell size (x, y) [Å]"
    )
    vacuum_z_A: float = Field(5.0, ge=0, description="vacuum above/below along the beam [Å]")

    @model_validator(mode="after")
    def _check_ranges(self) -> OxideConfig:
        lo, hi = self.crystal_height_fraction
        if not 0.1 <= lo <= hi <= 0.95:
            raise ValueError("crystal_height_fraction: need 0.1 <= min <= max <= 0.95")
        if any(n < 1 for n in self.thickness_unit_cells):
            raise ValueError("thickness_unit_cells: each must be >= 1")
        return self


class StructuresConfig(StrictModel):
    """The structure library."""

    pt_on_ceo2: PtOnCeO2Config = Field(default_factory=PtOnCeO2Config)
    oxides: OxideConfig = Field(default_factory=OxideConfig)
    n_shards: int = Field(10, ge=1, description="Snakemake jobs that build the library")
    min_distance_factor: float = Field(
        0.7, gt=0, le=1.2, description="min pair distance as a fraction of covalent radii sum"
    )

    @property
    def total(self) -> int:
        """Number of structures in the library."""
        return self.pt_on_ceo2.count + self.oxides.count
