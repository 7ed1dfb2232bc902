"""Public data sets, read from a local data directory or fetched from their canonical source.

Where the data come from
------------------------
1. A local data directory, when one is configured: the ``MIRE2E_DATA_DIR``
   environment variable, else a ``shared/data`` folder beside the repository
   checkout (how the project's CI and developers run, offline).
2. Otherwise the canonical public source (UCSC Genome Browser API, miRBase,
   NCBI), downloaded once with :mod:`pooch` into the user cache directory
   (``MIRE2E_CACHE_DIR`` overrides it) and reused afterwards.

Every file is addressed by its path relative to the data directory, e.g.
``"genomic/mire2e_example_chr19_13836201_13836660_true.fa"``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

UCSC = "https://api.genome.ucsc.edu/getData/sequence?genome=hg38;chrom={chrom};start={start};end={end}"


@dataclass(frozen=True)
class Remote:
    """Where a data file lives publicly.

    Attributes
    ----------
    url
        Download address.
    kind
        ``"file"`` (saved as is) or ``"ucsc"`` (UCSC JSON turned into FASTA).
    header
        FASTA header for ``"ucsc"`` downloads.
    note
        Provenance, shown in :func:`describe`.
    """

    url: str
    kind: str = "file"
    header: str = ""
    note: str = ""


#: the demo locus: hsa-mir-23a, -27a and -24-2 on the minus strand of chr19
DEMO_LOCUS = "genomic/mire2e_example_chr19_13836201_13836660_true.fa"
DEMO_REGION = ("chr19", 13836201, 13836660)  # 0-based half-open, as in the file name (459 nt)

REGISTRY: dict[str, Remote] = {
    DEMO_LOCUS: Remote(
        UCSC.format(chrom="chr19", start=13836201, end=13836660), kind="ucsc", header="chr19:13836202-13836660",
        note="GRCh38 chr19, miR-23a/27a/24-2 cluster (minus strand); UCSC Genome Browser API",
    ),
    "genomic/mire2e_example_chr19_12003600_12004200_false.fa": Remote(
        UCSC.format(chrom="chr19", start=12003599, end=12004200), kind="ucsc", header="chr19:12003600-12004200",
        note="GRCh38 chr19, 600 nt with no pre-miRNA; UCSC Genome Browser API",
    ),
    "genomic/hg38_chr21_background_1Mb.fa": Remote(
        UCSC.format(chrom="chr21", start=15279869, end=16279869), kind="ucsc", header="chr21:15279870-16279869",
        note="GRCh38 chr21, 1 Mb of background with no miRBase hairpin; UCSC Genome Browser API",
    ),
    "mirbase/hsa_v22_GRCh38.gff3": Remote(
        "https://www.mirbase.org/download/hsa.gff3", note="miRBase human annotation (GRCh38)",
    ),
    "mirbase/hairpin_v22_hsa.fa": Remote(
        "https://www.mirbase.org/download/hairpin.fa", note="miRBase hairpins (all species)",
    ),
    "viral/NC_045512.2_Wuhan-Hu-1.fasta": Remote(
        "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/efetch.fcgi?db=nuccore&id=NC_045512.2&rettype=fasta",
        note="SARS-CoV-2 reference genome, NCBI",
    ),
}


def local_data_dir() -> Path | None:
    """The configured local data directory, or ``None`` when there is none."""
    env = os.environ.get("MIRE2E_DATA_DIR")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parent.parent
    for cand in (repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"):
        if cand.is_dir():
            return cand.resolve()
    return None


def cache_dir() -> Path:
    """Where downloads are kept (``MIRE2E_CACHE_DIR`` or the OS user cache)."""
    env = os.environ.get("MIRE2E_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("mire2e-viz"))


def _ucsc_to_fasta(header: str):
    def process(fname: str, action: str, pup) -> str:
        out = Path(fname).with_suffix(".fa")
        if action in ("download", "update") or not out.exists():
            payload = json.loads(Path(fname).read_text())
            dna = payload.get("dna")
            if not dna:
                raise InputError(f"{fname}: the UCSC answer holds no sequence ({str(payload)[:120]})")
            lines = [dna[i : i + 60].upper() for i in range(0, len(dna), 60)]
            out.write_text(f">{header}\n" + "\n".join(lines) + "\n")
        return str(out)

    return process


def fetch(relpath: str, download: bool = True) -> Path:
    """Path to a data file: local copy first, else a cached download.

    Parameters
    ----------
    relpath
        Path relative to the data directory (see :data:`REGISTRY`).
    download
        Allow downloading from the canonical source when there is no local copy.

    Raises
    ------
    InputError
        When the file is neither local nor downloadable, with the reason.
    """
    local = local_data_dir()
    if local is not None and (local / relpath).is_file():
        return local / relpath
    cached = cache_dir() / Path(relpath).with_suffix(".fa" if REGISTRY.get(relpath, Remote("")).kind == "ucsc" else Path(relpath).suffix)
    if cached.is_file():
        return cached
    remote = REGISTRY.get(relpath)
    where = f"the local data directory ({local})" if local else "no local data directory (set MIRE2E_DATA_DIR)"
    if remote is None:
        raise InputError(f"{relpath}: not found in {where}, and it has no public download address")
    if not download:
        raise InputError(f"{relpath}: not found in {where}, and downloading is disabled")
    import pooch

    processor = _ucsc_to_fasta(remote.header) if remote.kind == "ucsc" else None
    try:
        got = pooch.retrieve(
            remote.url, known_hash=None, fname=Path(relpath).name + (".json" if remote.kind == "ucsc" else ""),
            path=cache_dir() / Path(relpath).parent, processor=processor, progressbar=False,
        )
    except Exception as err:  # noqa: BLE001 - network errors come in many types
        raise InputError(f"{relpath}: not in {where}, and the download from {remote.url} failed ({type(err).__name__})") from None
    return Path(got)


def demo_locus() -> Path:
    """FASTA of the demo locus (chr19 miR-23a/27a/24-2 cluster, 459 nt, + strand)."""
    return fetch(DEMO_LOCUS)


def demo_record():
    """The demo locus as a :class:`~mire2e_viz.sequences.Record` in genomic coordinates.

    Its ``seqname`` is ``chr19`` and its ``offset`` maps positions in the
    459-nt sequence to GRCh38, so scan tables and exports open in place in IGV.
    """
    from .sequences import iter_fasta

    rec = next(iter_fasta(demo_locus()))
    rec.seqname, rec.offset = DEMO_REGION[0], DEMO_REGION[1]
    rec.name = f"{DEMO_REGION[0]}:{DEMO_REGION[1] + 1}-{DEMO_REGION[2]}"
    return rec


def demo_annotation() -> Path:
    """miRBase GFF3 annotation of the human genome (for the demo locus's hairpins)."""
    return fetch("mirbase/hsa_v22_GRCh38.gff3")


def describe() -> str:
    """Where each registered file would be read from, one line each."""
    local = local_data_dir()
    lines = [f"local data directory: {local or '(none)'}", f"download cache: {cache_dir()}"]
    for rel, remote in REGISTRY.items():
        src = "local" if local and (local / rel).is_file() else "download"
        lines.append(f"  [{src:8}] {rel}: {remote.note}")
    return "\n".join(lines)
