"""Training and evaluation data for the miRe2e cascade.

Everything is read by path from the shared data directory (``$MIRE2E_DATA_DIR``,
default ``<repo>/../shared/data``); nothing from it is copied into the repository.
Derived artefacts (RNAfold labels, window tables) are cached under a work
directory (default ``<repo>/runs/cache``).

Design
------
* **Positives**: miRBase 22 hairpins (hsa, mmu, mml, rno). The structure and
  MFE stages train on all four species; the classifier takes its positives
  from the species in its ``positive_species`` setting (human by default; the
  shipped ``hsa`` classifier uses all four, since orthologs stay in their
  family's split).
* **Negatives**: CODING pseudo-hairpins, Rfam non-miRNA ncRNAs, 100-nt windows
  of human genomic background (chr21 and the 8 miRNA-free regions, both
  strands) and dinucleotide-shuffled hairpins.
* **Genomic context**: every hairpin and every pseudo-hairpin / ncRNA of at
  most 100 nt appears twice, once isolated (zero-padded to 100 nt, as miRe2e
  trained) and once placed at a uniformly random offset inside a 100-nt
  window of real chr21 background (random strand). Treating negatives the same
  way stops the classifier from learning "padding means positive".
* **Classifier-only windows** (config flags of the classifier stage):
  ``classifier_extra`` adds two more genomic-context placements of every human
  training hairpin and 8,000 more background windows; ``strand_decoys`` adds
  the reverse complement of every human hairpin (or of every hairpin of the
  listed species), isolated and in genomic context, as a negative (a scan
  reads both strands, and the antisense strand of a pre-miRNA folds into a
  hairpin too), except where that antisense strand shares a 20-mer with a
  miRBase hairpin.
* **Other animal species** (config flag ``animal_hairpins``): the stem-loops
  of every other metazoan species in miRBase 22's ``miRNA.dat`` (plants and
  viruses excluded; 146 species), for training only, each isolated, in genomic
  context, dinucleotide-shuffled and as strand decoys. A hairpin is dropped
  when it shares a family key with a validation hairpin, has 8-mer Jaccard
  >= 0.3 with one, or shares a 20-mer (either strand) with one or with a
  DeepMirCut validation hairpin (:func:`animal_hairpins`). The shipped
  classifier learns from them, and so does the shipped MFE stage (its last
  two fine-tunes, through a ``scripts/cascade_table.py --animals`` table).
* **MFE-only windows** (config flag ``mfe_extra``; :func:`mfe_extra`): fresh
  RNAfold-labelled windows from the training side only (two more
  genomic-context placements or random crops of every training hairpin of all
  species, a fresh shuffle and the reverse complement in context of each, two
  more placements of every training CODING pseudo-hairpin and one of its
  reverse complement, 16,000 more background windows). The MFE stage is a
  regression on RNAfold's energy and over-fits the base table within a few
  epochs.
* **Splits**: hairpins are clustered by miRNA family name (species prefix and
  paralog suffixes stripped: ``hsa-mir-24-2`` -> ``mir-24``) joined with 8-mer
  Jaccard similarity >= 0.3 (single linkage), so paralogs and orthologs never
  straddle train and validation. Clusters that hold a DeepMirCut validation
  hairpin or one of the chr19 example hairpins (mir-23a/27a/24-2) always go to
  validation; further clusters are drawn at random (seeded) up to
  ``val_fraction``. Negatives are split at random (seeded); chr21 is cut into
  disjoint blocks: training flanks/background ``[0, 700k)``, validation
  ``[700k, 800k)``, false-positive scan ``[800k, 1M)``.
* **Labels**: RNAfold (ViennaRNA, default parameters, 37 °C) of exactly the
  nucleotides the network sees (the real length of a padded sequence, the whole
  window otherwise); structure ``'(' = 1, '.' = 0, ')' = -1`` (0 on padding),
  MFE target ``|MFE| / length``. Folds run in a process pool and are cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from .encoding import WINDOW, pad_codes, reverse_complement

REPO = Path(__file__).resolve().parents[1]

#: chr21 background blocks (0-based, half-open), disjoint by construction
CHR21_TRAIN = (0, 700_000)
CHR21_VAL = (700_000, 800_000)
CHR21_FP = (800_000, 1_000_000)
#: share of the 8 miRNA-free regions (concatenated) used for training; the rest is validation
REGIONS_TRAIN_FRACTION = 0.85

#: families held out of training because the localization benchmark uses them
CHR19_FAMILIES = ("mir-23", "mir-27", "mir-24")

SPECIES = ("hsa", "mmu", "mml", "rno")


def data_dir() -> Path:
    """Shared data directory: ``$MIRE2E_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MIRE2E_DATA_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Cache directory: ``$MIRE2E_CACHE_DIR`` or ``<repo>/runs/cache`` (created)."""
    env = os.environ.get("MIRE2E_CACHE_DIR")
    path = Path(env) if env else REPO / "runs" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- I/O


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """Read a FASTA file into ``(header, sequence)`` pairs.

    Sequences are upper-cased and converted to the RNA alphabet (T -> U);
    headers keep everything after ``>`` (whitespace-stripped).
    """
    records: list[tuple[str, str]] = []
    name, chunks = None, []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(chunks).upper().replace("T", "U")))
                name, chunks = line[1:].strip(), []
            else:
                chunks.append(line)
    if name is not None:
        records.append((name, "".join(chunks).upper().replace("T", "U")))
    return records


def read_genome(path: str | Path) -> str:
    """Concatenate all records of a FASTA file (RNA alphabet)."""
    return "".join(s for _, s in read_fasta(path))


def family_key(name: str) -> str:
    """miRNA family key of a hairpin name.

    Strips the species prefix and paralog suffixes (trailing ``-<n>`` and
    letters): ``hsa-mir-24-2`` -> ``mir-24``, ``mmu-let-7a-1`` -> ``let-7``,
    ``hsa-mir-23a`` -> ``mir-23``.
    """
    parts = name.split()[0].lower().split("-")
    if len(parts) > 1 and len(parts[0]) == 3:
        parts = parts[1:]
    if len(parts) >= 2:
        core = re.match(r"\d+", parts[1])
        return f"{parts[0]}-{core.group(0) if core else parts[1]}"
    return parts[0]


# ------------------------------------------------------------------- clustering


def _kmer_matrix(seqs: Sequence[str], k: int):
    from scipy import sparse

    table = {"A": 0, "C": 1, "G": 2, "U": 3}
    rows, cols = [], []
    for i, s in enumerate(seqs):
        idx = np.array([table.get(c, 0) for c in s], dtype=np.int64)
        if idx.size < k:
            continue
        codes = np.zeros(idx.size - k + 1, dtype=np.int64)
        for j in range(k):
            codes = codes * 4 + idx[j : j + idx.size - k + 1]
        codes = np.unique(codes)
        rows.append(np.full(codes.size, i))
        cols.append(codes)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sparse.csr_matrix((np.ones(r.size, np.float32), (r, c)), shape=(len(seqs), 4**k))


def kmer_jaccard_pairs(
    a: Sequence[str], b: Sequence[str] | None = None, k: int = 8, threshold: float = 0.3
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)`` with k-mer Jaccard similarity >= ``threshold``.

    With ``b=None`` pairs within ``a`` (``i < j``), else between ``a`` and ``b``.
    """
    xa = _kmer_matrix(a, k)
    xb = xa if b is None else _kmer_matrix(b, k)
    inter = (xa @ xb.T).tocoo()
    na = np.asarray(xa.sum(1)).ravel()
    nb = np.asarray(xb.sum(1)).ravel()
    union = na[inter.row] + nb[inter.col] - inter.data
    jac = inter.data / np.maximum(union, 1)
    keep = jac >= threshold
    if b is None:
        keep &= inter.row < inter.col
    return list(zip(inter.row[keep].tolist(), inter.col[keep].tolist(), strict=True))


def cluster_hairpins(names: Sequence[str], seqs: Sequence[str], k: int = 8, threshold: float = 0.3) -> np.ndarray:
    """Single-linkage clusters from family names and k-mer Jaccard similarity.

    Returns
    -------
    numpy.ndarray
        Cluster id per hairpin (``int64``, ids are the smallest member index).
    """
    parent = list(range(len(seqs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first: dict[str, int] = {}
    for i, n in enumerate(names):
        fam = family_key(n)
        if fam in first:
            union(first[fam], i)
        else:
            first[fam] = i
    for i, j in kmer_jaccard_pairs(seqs, None, k, threshold):
        union(i, j)
    return np.array([find(i) for i in range(len(seqs))], dtype=np.int64)


# ---------------------------------------------------------------- sequence ops


def dinuc_shuffle(seq: str, rng: np.random.Generator) -> str:
    """Dinucleotide-preserving shuffle (Altschul & Erickson 1985, Euler-path method)."""
    if len(seq) < 3:
        return seq
    edges: dict[str, list[str]] = defaultdict(list)
    for a, b in zip(seq[:-1], seq[1:], strict=True):
        edges[a].append(b)
    last = seq[-1]
    while True:
        lastedge = {v: int(rng.integers(len(outs))) for v, outs in edges.items() if v != last}
        ok = True
        for v in lastedge:
            seen, u = set(), v
            while u != last:
                if u in seen:
                    ok = False
                    break
                seen.add(u)
                u = edges[u][lastedge[u]]
            if not ok:
                break
        if ok:
            break
    lists: dict[str, list[str]] = {}
    for v, outs in edges.items():
        outs = list(outs)
        if v in lastedge:
            tail = outs.pop(lastedge[v])
            rng.shuffle(outs)
            outs.append(tail)
        else:
            rng.shuffle(outs)
        lists[v] = outs
    out, pos, u = [seq[0]], defaultdict(int), seq[0]
    for _ in range(len(seq) - 1):
        nxt = lists[u][pos[u]]
        pos[u] += 1
        out.append(nxt)
        u = nxt
    return "".join(out)


def center_crop(seq: str, length: int = WINDOW) -> str:
    """The central ``length`` nt of ``seq`` (``seq`` itself if shorter)."""
    if len(seq) <= length:
        return seq
    start = (len(seq) - length) // 2
    return seq[start : start + length]


def embed(seq: str, background: str, rng: np.random.Generator, length: int = WINDOW) -> tuple[str, int]:
    """Place ``seq`` (cropped to ``length``) at a random offset in a background window.

    The flanks are one contiguous random stretch of ``background`` (random
    strand) split at the insertion point. Returns the window and the offset.
    """
    seq = center_crop(seq, length)
    n_flank = length - len(seq)
    offset = int(rng.integers(n_flank + 1))
    start = int(rng.integers(len(background) - n_flank))
    flank = background[start : start + n_flank]
    if rng.random() < 0.5:
        flank = reverse_complement(flank)
    return flank[:offset] + seq + flank[offset:], offset


def random_windows(genome: str, n: int, rng: np.random.Generator, length: int = WINDOW) -> list[str]:
    """``n`` random ``length``-nt windows of ``genome`` on a random strand."""
    starts = rng.integers(0, len(genome) - length, size=n)
    out = []
    for s in starts:
        w = genome[s : s + length]
        out.append(reverse_complement(w) if rng.random() < 0.5 else w)
    return out


# ------------------------------------------------------------------- RNAfold


def _fold_one(seq: str) -> tuple[str, float]:
    import RNA

    db, mfe = RNA.fold(seq)
    return db, float(mfe)


def fold_many(seqs: Iterable[str], processes: int = 2, cache: Path | None = None, progress: bool = True) -> dict[str, tuple[str, float]]:
    """RNAfold every distinct sequence, in parallel, with a persistent cache.

    Parameters
    ----------
    seqs
        RNA sequences.
    processes
        Worker processes (``multiprocessing.Pool``).
    cache
        Pickle file mapping sequence -> ``(dot-bracket, mfe)``; default
        ``cache_dir()/rnafold.pkl``.
    progress
        Show a tqdm bar.

    Returns
    -------
    dict
        ``sequence -> (dot-bracket, MFE in kcal/mol)`` for every requested sequence.
    """
    cache = cache or cache_dir() / "rnafold.pkl"
    known: dict[str, tuple[str, float]] = {}
    if cache.exists():
        with open(cache, "rb") as fh:
            known = pickle.load(fh)
    wanted = list(dict.fromkeys(seqs))
    todo = [s for s in wanted if s not in known]
    if todo:
        from tqdm.auto import tqdm

        with Pool(processes) as pool:
            it = pool.imap(_fold_one, todo, chunksize=64)
            for s, res in zip(todo, tqdm(it, total=len(todo), desc="RNAfold", disable=not progress), strict=True):
                known[s] = res
        tmp = cache.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(known, fh)
        tmp.replace(cache)
    return {s: known[s] for s in wanted}


def profile_from_dotbracket(db: str, length: int = WINDOW) -> np.ndarray:
    """Reference encoding of a dot-bracket: '(' = 1, '.' = 0, ')' = -1, zero-padded."""
    out = np.zeros(length, dtype=np.float32)
    arr = np.frombuffer(db.encode("ascii"), dtype=np.uint8)
    vals = np.zeros(arr.size, dtype=np.float32)
    vals[arr == ord("(")] = 1.0
    vals[arr == ord(")")] = -1.0
    out[: arr.size] = vals
    return out


# --------------------------------------------------------------- window table


@dataclass
class WindowSet:
    """A table of 100-nt windows with RNAfold labels.

    Attributes
    ----------
    seqs
        Window sequences (at most 100 nt; shorter ones are zero-padded by the model input).
    label
        1 = pre-miRNA (hairpin), 0 = negative.
    kind
        Source: ``hairpin``, ``hairpin_ctx`` (hairpin in genomic context),
        ``coding``, ``coding_ctx``, ``rfam``, ``rfam_ctx``, ``genomic``, ``shuffled``,
        ``hairpin_rc`` / ``hairpin_rc_ctx`` (strand decoys, see :func:`strand_decoys`).
    species
        Three-letter species code of a hairpin ('' for negatives).
    name
        Record name.
    split
        ``train`` or ``val``.
    """

    seqs: list[str]
    label: np.ndarray
    kind: np.ndarray
    species: np.ndarray
    name: np.ndarray
    split: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seqs)

    def subset(self, mask: np.ndarray) -> WindowSet:
        """Rows where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        return WindowSet(
            [self.seqs[i] for i in idx], self.label[idx], self.kind[idx], self.species[idx],
            self.name[idx], self.split[idx], dict(self.meta),
        )

    def arrays(self, processes: int = 2) -> dict[str, np.ndarray]:
        """Encoded inputs and RNAfold targets.

        Returns
        -------
        dict
            ``codes`` (N, 100) uint8, ``lengths`` (N,), ``profile`` (N, 100)
            float32 targets, ``mfe`` (N,) kcal/mol, ``mfe_raw`` (N,) = |MFE|/length,
            ``label`` (N,) int64.
        """
        folds = fold_many(self.seqs, processes=processes)
        codes, lengths = pad_codes(self.seqs)
        prof = np.stack([profile_from_dotbracket(folds[s][0]) for s in self.seqs]) if self.seqs else np.zeros((0, WINDOW), np.float32)
        mfe = np.array([folds[s][1] for s in self.seqs], dtype=np.float32)
        return {
            "codes": codes,
            "lengths": lengths,
            "profile": prof,
            "mfe": mfe,
            "mfe_raw": np.abs(mfe) / lengths.astype(np.float32),
            "label": self.label.astype(np.int64),
        }


def load_hairpins() -> tuple[list[str], list[str], list[str]]:
    """miRBase 22 hairpins of the four species: names, sequences, species codes."""
    names, seqs, species = [], [], []
    for sp in SPECIES:
        for h, s in read_fasta(data_dir() / "mirbase" / f"hairpin_v22_{sp}.fa"):
            names.append(h.split()[0])
            seqs.append(s)
            species.append(sp)
    return names, seqs, species


def read_mirbase_dat(path: str | Path | None = None) -> list[dict]:
    """Every stem-loop of miRBase's EMBL-format ``miRNA.dat`` (all species).

    Returns
    -------
    list of dict
        ``name`` (``cel-let-7``), ``species`` (``cel``), ``description`` (the DE
        line) and ``seq`` (RNA alphabet, upper case) per entry, in file order.
    """
    import gzip

    path = Path(path) if path else data_dir() / "mirbase" / "miRNA_v22.dat.gz"
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[dict] = []
    rec: dict = {}
    in_seq = False
    with opener(path, "rt") as fh:
        for line in fh:
            tag = line[:2]
            if tag == "ID":
                name = line[5:].split()[0]
                rec = {"name": name, "species": name.split("-")[0], "description": "", "seq": []}
                in_seq = False
            elif tag == "DE":
                rec["description"] = line[5:].strip()
            elif tag == "SQ":
                in_seq = True
            elif tag == "//":
                if rec:
                    rec["seq"] = "".join(rec["seq"]).upper().replace("T", "U")
                    out.append(rec)
                rec, in_seq = {}, False
            elif in_seq and rec:
                rec["seq"].append("".join(ch for ch in line if ch.isalpha()))
    return out


def is_animal_hairpin(rec: dict) -> bool:
    """True for a metazoan miRBase stem-loop: not a plant (``MIR`` names) and not a virus."""
    parts = rec["name"].split("-")
    return (len(parts) > 1 and not parts[1].startswith("MIR")
            and "virus" not in rec["description"].lower() and "phage" not in rec["description"].lower())


def other_animal_stem_loops() -> list[dict]:
    """The :func:`read_mirbase_dat` records of metazoan species outside :data:`SPECIES` (unfiltered)."""
    return [r for r in read_mirbase_dat() if r["species"] not in SPECIES and is_animal_hairpin(r)]


def animal_hairpins(seed: int = 0, k: int = 20, jaccard_k: int = 8, jaccard: float = 0.3) -> tuple[list[str], list[str], list[str], dict]:
    """miRBase animal hairpins of the other species, guarded against the validation split.

    The four species of :data:`SPECIES` already train as usual. The stem-loops
    of every other metazoan species (plants and viruses excluded) are added for
    training only, and a hairpin is dropped when it could leak validation
    families into training: it shares a family key (:func:`family_key`) with a
    validation hairpin of the split, its ``jaccard_k``-mer Jaccard similarity
    with one is at least ``jaccard``, or it shares a ``k``-mer (either strand)
    with a validation hairpin or a DeepMirCut validation hairpin. Exact copies
    of a four-species hairpin and sequences outside ACGU are dropped too.

    Returns
    -------
    names, seqs, species, counts
    """
    split = make_split(seed)
    names4, seqs4, _ = load_hairpins()
    val = [s for s, sl in zip(seqs4, split["split"], strict=True) if sl == "val"]
    val_fams = {family_key(n) for n, sl in zip(names4, split["split"], strict=True) if sl == "val"}
    guard = val + [r["hairpin"] for r in load_deepmircut()]
    guard_kmers: set[str] = set()
    for s in guard:
        guard_kmers |= _kmers(s, k) | _kmers(reverse_complement(s), k)
    known = set(seqs4)
    recs = other_animal_stem_loops()
    counts = {"animal_hairpins_other_species": len(recs)}
    recs = [r for r in recs if set(r["seq"]) <= set("ACGU") and 40 <= len(r["seq"]) and r["seq"] not in known]
    counts["valid_and_new"] = len(recs)
    fam_bad = {i for i, r in enumerate(recs) if family_key(r["name"]) in val_fams}
    jac_bad = {i for i, _ in kmer_jaccard_pairs([r["seq"] for r in recs], guard, jaccard_k, jaccard)}
    kmer_bad = {i for i, r in enumerate(recs) if not _kmers(r["seq"], k).isdisjoint(guard_kmers)}
    bad = fam_bad | jac_bad | kmer_bad
    counts.update(dropped_family=len(fam_bad), dropped_jaccard=len(jac_bad), dropped_kmer=len(kmer_bad),
                  kept=len(recs) - len(bad))
    keep = [r for i, r in enumerate(recs) if i not in bad]
    return [r["name"] for r in keep], [r["seq"] for r in keep], [r["species"] for r in keep], counts


def animal_windows(seed: int = 0, processes: int = 2) -> tuple[WindowSet, dict[str, np.ndarray]]:
    """Training windows from :func:`animal_hairpins`, cached (train split only).

    Per hairpin, as for the four species in :func:`build_windows` and
    :func:`strand_decoys`: the hairpin isolated and in genomic context (chr21
    training block), a dinucleotide shuffle (negative), and its reverse
    complement isolated and in context (negatives; dropped when the antisense
    strand shares a 20-mer with any miRBase stem-loop).
    """
    return _cached_labelled(f"animal_windows_seed{seed}.pkl", lambda: animal_window_table(seed), processes)


def animal_window_table(seed: int = 0) -> WindowSet:
    """The windows of :func:`animal_windows`, without RNAfold labels (not cached)."""
    rng = np.random.default_rng(seed + 3000)
    names, seqs, species, counts = animal_hairpins(seed)
    known: set[str] = set()
    for r in read_mirbase_dat():
        known |= _kmers(r["seq"], 20)
    chr21 = read_genome(data_dir() / "genomic" / "hg38_chr21_background_1Mb.fa")
    bg = chr21[slice(*CHR21_TRAIN)]
    rows = []
    n_anti = 0
    for n, s, sp in zip(names, seqs, species, strict=True):
        rows.append((center_crop(s), 1, "hairpin", sp, n))
        rows.append((embed(s, bg, rng)[0], 1, "hairpin_ctx", sp, n))
        rows.append((center_crop(dinuc_shuffle(s, rng)), 0, "shuffled", "", n + "_shuf"))
        rc = reverse_complement(s)
        if _kmers(rc, 20) & known:
            n_anti += 1
            continue
        rows.append((center_crop(rc), 0, "hairpin_rc", "", n + "_rc"))
        rows.append((embed(rc, bg, rng)[0], 0, "hairpin_rc_ctx", "", n + "_rc"))
    counts["dropped_antisense_loci"] = n_anti
    s_, lab, kind, sp_, nm = zip(*rows, strict=True)
    return WindowSet(list(s_), np.array(lab), np.array(kind), np.array(sp_), np.array(nm),
                     np.array(["train"] * len(rows)), counts)


def load_deepmircut(base_only: bool = True) -> list[dict]:
    """DeepMirCut validation rows: name, extended sequence, hairpin start/end (1-based)."""
    rows = []
    with open(data_dir() / "deepmircut" / "validationSet.txt") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) < 12 or not f[9].isdigit():
                continue
            if base_only and "_x" in f[0]:
                continue
            seq = f[11].upper().replace("T", "U")
            rows.append({"id": f[0], "name": f[1], "start": int(f[9]), "end": int(f[10]), "seq": seq,
                         "hairpin": seq[int(f[9]) - 1 : int(f[10])]})
    return rows


def make_split(seed: int = 0, val_fraction: float = 0.12) -> dict:
    """Cluster the hairpins and assign clusters to train / validation.

    Returns
    -------
    dict
        ``names``, ``species``, ``cluster`` and ``split`` per hairpin, plus counts
        and the reason each forced validation cluster was forced.
    """
    names, seqs, species = load_hairpins()
    cl = cluster_hairpins(names, seqs)
    forced: dict[int, str] = {}
    for i, n in enumerate(names):
        if family_key(n) in CHR19_FAMILIES:
            forced[int(cl[i])] = "chr19 example family"
    dmc = load_deepmircut()
    for i, _j in kmer_jaccard_pairs(seqs, [r["hairpin"] for r in dmc], 8, 0.3):
        forced.setdefault(int(cl[i]), "DeepMirCut validation hairpin")
    dmc_fams = {family_key(r["name"]) for r in dmc}
    for i, n in enumerate(names):
        if family_key(n) in dmc_fams:
            forced.setdefault(int(cl[i]), "DeepMirCut validation family")
    rng = np.random.default_rng(seed)
    clusters = np.unique(cl)
    val = set(forced)
    n_val_target = int(round(val_fraction * len(seqs)))
    n_val = int(np.isin(cl, list(val)).sum())
    for c in rng.permutation(clusters):
        if n_val >= n_val_target:
            break
        if int(c) in val:
            continue
        val.add(int(c))
        n_val += int((cl == c).sum())
    split = np.where(np.isin(cl, list(val)), "val", "train")
    return {
        "seed": seed,
        "names": names,
        "species": species,
        "cluster": cl.tolist(),
        "split": split.tolist(),
        "forced": {str(k): v for k, v in forced.items()},
        "counts": {
            "hairpins": len(seqs),
            "clusters": int(clusters.size),
            "train": int((split == "train").sum()),
            "val": int((split == "val").sum()),
            "train_hsa": int(((split == "train") & (np.array(species) == "hsa")).sum()),
            "val_hsa": int(((split == "val") & (np.array(species) == "hsa")).sum()),
        },
    }


def split_backgrounds() -> tuple[dict[str, str], dict[str, str]]:
    """Genomic background per split: the chr21 blocks and the 8 regions' parts, keyed ``train`` / ``val``.

    Returns
    -------
    chr21, regions
        ``{"train": ..., "val": ...}`` each: chr21 ``CHR21_TRAIN`` / ``CHR21_VAL``,
        and the 8 regions (concatenated) cut at :data:`REGIONS_TRAIN_FRACTION`.
    """
    chr21 = read_genome(data_dir() / "genomic" / "hg38_chr21_background_1Mb.fa")
    regions = read_genome(data_dir() / "genomic" / "human_genomic_segments_8regions.fa")
    cut = int(len(regions) * REGIONS_TRAIN_FRACTION)
    return ({"train": chr21[slice(*CHR21_TRAIN)], "val": chr21[slice(*CHR21_VAL)]},
            {"train": regions[:cut], "val": regions[cut:]})


def build_windows(seed: int = 0, val_fraction: float = 0.12, n_genomic: int = 8000, neg_val_fraction: float = 0.1) -> WindowSet:
    """Assemble the full window table (train and validation), seeded.

    The split is saved to ``cache_dir()/split_seed<seed>.json``.
    """
    rng = np.random.default_rng(seed)
    split = make_split(seed, val_fraction)
    (cache_dir() / f"split_seed{seed}.json").write_text(json.dumps(split))
    names, seqs, species = load_hairpins()
    bg, regions_split = split_backgrounds()

    rows: list[tuple[str, int, str, str, str, str]] = []

    def add(seq: str, label: int, kind: str, sp: str, name: str, sp_split: str) -> None:
        if 10 <= len(seq) <= WINDOW and set(seq) <= set("ACGUN"):
            rows.append((seq, label, kind, sp, name, sp_split))

    for n, s, sp, sl in zip(names, seqs, species, split["split"], strict=True):
        add(center_crop(s), 1, "hairpin", sp, n, sl)
        add(embed(s, bg[sl], rng)[0], 1, "hairpin_ctx", sp, n, sl)
        add(center_crop(dinuc_shuffle(s, rng)), 0, "shuffled", "", n + "_shuf", sl)

    def neg_split() -> str:
        return "val" if rng.random() < neg_val_fraction else "train"

    for h, s in read_fasta(data_dir() / "negatives" / "pseudo_hairpins_human_CODING_8494.fa"):
        sl = neg_split()
        add(center_crop(s), 0, "coding", "", h, sl)
        if rng.random() < 0.5:
            add(embed(s, bg[sl], rng)[0], 0, "coding_ctx", "", h, sl)
    for h, s in read_fasta(data_dir() / "negatives" / "nRC_Rfam_6320_13classes.fa"):
        if h.split()[-1] == "miRNA":
            continue
        sl = neg_split()
        if len(s) > WINDOW:
            st = int(rng.integers(len(s) - WINDOW + 1))
            s = s[st : st + WINDOW]
        add(s, 0, "rfam", "", h.split()[0], sl)
        if len(s) < WINDOW and rng.random() < 0.5:
            add(embed(s, bg[sl], rng)[0], 0, "rfam_ctx", "", h.split()[0], sl)
    for sl, frac in (("train", 1 - neg_val_fraction), ("val", neg_val_fraction)):
        n = int(n_genomic * frac)
        for i, w in enumerate(random_windows(bg[sl], n * 3 // 4, rng) + random_windows(regions_split[sl], n // 4, rng)):
            add(w, 0, "genomic", "", f"genomic_{sl}_{i}", sl)
    seqs_, label, kind, sp_, name, spl = zip(*rows, strict=True)
    ws = WindowSet(list(seqs_), np.array(label), np.array(kind), np.array(sp_), np.array(name), np.array(spl))
    ws.meta = {"seed": seed, "split_counts": split["counts"], "forced_val_clusters": len(split["forced"])}
    return ws


def _cached_labelled(filename: str, build: Callable[[], WindowSet], processes: int = 2) -> tuple[WindowSet, dict[str, np.ndarray]]:
    """A window table with its RNAfold-labelled arrays, from ``cache_dir()/filename`` or built and cached.

    ``build()`` returns the :class:`WindowSet`; its arrays come from :meth:`WindowSet.arrays`.
    """
    path = cache_dir() / filename
    if path.exists():
        with open(path, "rb") as fh:
            fields, arrays = pickle.load(fh)
        return WindowSet(**fields), arrays
    ws = build()
    arrays = ws.arrays(processes)
    with open(path, "wb") as fh:
        pickle.dump((dict(vars(ws)), arrays), fh)
    return ws, arrays


def load_windows(seed: int = 0, processes: int = 2) -> tuple[WindowSet, dict[str, np.ndarray]]:
    """Build (or load from cache) the window table and its encoded arrays with labels."""
    return _cached_labelled(f"windows_seed{seed}.pkl", lambda: build_windows(seed), processes)


def counts(ws: WindowSet) -> dict[str, dict[str, int]]:
    """Window counts per split and kind (for records and the model card)."""
    out: dict[str, dict[str, int]] = {}
    for sl in ("train", "val"):
        m = ws.split == sl
        kinds, n = np.unique(ws.kind[m], return_counts=True)
        out[sl] = {str(k): int(c) for k, c in zip(kinds, n, strict=True)}
        hs = m & (ws.species == "hsa") & (ws.label == 1)
        out[sl]["hsa_positive_windows"] = int(hs.sum())
    return out


def digest(paths: Iterable[Path]) -> str:
    """Short sha256 over the bytes of data files (provenance for records)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def classifier_extra(seed: int = 0, n_ctx: int = 2, n_genomic: int = 8000, processes: int = 2) -> tuple[WindowSet, dict[str, np.ndarray]]:
    """Extra classifier training windows (train split only), cached.

    ``n_ctx`` more genomic-context placements of every human training hairpin
    (chr21 training block) and ``n_genomic`` more background windows (chr21
    training block and the 8 regions' training part), both strands.
    """
    return _cached_labelled(f"classifier_extra_seed{seed}_{n_ctx}_{n_genomic}.pkl",
                            lambda: classifier_extra_table(seed, n_ctx, n_genomic), processes)


def classifier_extra_table(seed: int = 0, n_ctx: int = 2, n_genomic: int = 8000) -> WindowSet:
    """The windows of :func:`classifier_extra`, without RNAfold labels (not cached)."""
    rng = np.random.default_rng(seed + 1000)
    split = make_split(seed)
    names, seqs, species = load_hairpins()
    chr21, regions = split_backgrounds()
    bg, regions = chr21["train"], regions["train"]
    rows = []
    for n, s, sp, sl in zip(names, seqs, species, split["split"], strict=True):
        if sp == "hsa" and sl == "train":
            for _ in range(n_ctx):
                rows.append((embed(s, bg, rng)[0], 1, "hairpin_ctx", sp, n))
    gw = random_windows(bg, n_genomic * 3 // 4, rng) + random_windows(regions, n_genomic // 4, rng)
    rows += [(w, 0, "genomic", "", f"genomic_extra_{i}") for i, w in enumerate(gw) if set(w) <= set("ACGUN")]
    s_, lab, kind, sp_, nm = zip(*rows, strict=True)
    return WindowSet(list(s_), np.array(lab), np.array(kind), np.array(sp_), np.array(nm), np.array(["train"] * len(rows)))


def mfe_extra(seed: int = 0, n_ctx: int = 2, n_genomic: int = 16000, processes: int = 2) -> tuple[WindowSet, dict[str, np.ndarray]]:
    """More RNAfold-labelled training windows for the MFE stage (train split only), cached.

    The MFE stage is a regression on RNAfold's energy, so any window with its
    fold is a valid example; with the base table it over-fits after a few
    epochs. Per training hairpin of the four species and of the other animal
    species (:func:`animal_hairpins`, guarded against validation families):
    ``n_ctx`` fresh genomic-context placements (random 100-nt crops of a
    longer hairpin), a fresh dinucleotide shuffle and
    its reverse complement in context. Per training CODING pseudo-hairpin (the
    base table's split): ``n_ctx`` fresh placements and its reverse complement
    in context. Plus ``n_genomic`` fresh background windows. Flanks and
    background come from the training blocks only (chr21 ``[0, 700k)``, the
    first 85 % of the 8 regions). Labels follow the window's kind, but these
    windows are meant for the MFE stage only.
    """
    return _cached_labelled(f"mfe_extra_seed{seed}_{n_ctx}_{n_genomic}.pkl",
                            lambda: mfe_extra_table(seed, n_ctx, n_genomic), processes)


def mfe_extra_table(seed: int = 0, n_ctx: int = 2, n_genomic: int = 16000) -> WindowSet:
    """The windows of :func:`mfe_extra`, without RNAfold labels (not cached)."""
    rng = np.random.default_rng(seed + 4000)
    split = make_split(seed)
    names, seqs, species = load_hairpins()
    hp = [(n, s, sp) for n, s, sp, sl in zip(names, seqs, species, split["split"], strict=True) if sl == "train"]
    an, aseqs, asp, _ = animal_hairpins(seed)
    hp += list(zip(an, aseqs, asp, strict=True))
    chr21, regions = split_backgrounds()
    bg, regions = chr21["train"], regions["train"]
    rows = []
    for n, s, sp in hp:
        if not set(s) <= set("ACGU"):
            continue
        for k in range(n_ctx):  # a hairpin longer than the window: a random crop instead
            if len(s) > WINDOW:
                st = int(rng.integers(len(s) - WINDOW + 1))
                rows.append((s[st : st + WINDOW], 1, "hairpin_ctx", sp, f"{n}_mx{k}"))
            else:
                rows.append((embed(s, bg, rng)[0], 1, "hairpin_ctx", sp, f"{n}_mx{k}"))
        rows.append((center_crop(dinuc_shuffle(s, rng)), 0, "shuffled", "", f"{n}_mxshuf"))
        rows.append((embed(reverse_complement(s), bg, rng)[0], 0, "hairpin_rc_ctx", "", f"{n}_mxrc"))
    base, _ = load_windows(seed)
    coding_train = {str(nm) for nm, k, sl in zip(base.name, base.kind, base.split, strict=True)
                    if k == "coding" and sl == "train"}
    for h, s in read_fasta(data_dir() / "negatives" / "pseudo_hairpins_human_CODING_8494.fa"):
        if h not in coding_train or not set(s) <= set("ACGU"):
            continue
        for k in range(n_ctx):
            rows.append((embed(s, bg, rng)[0], 0, "coding_ctx", "", f"{h}_mx{k}"))
        rows.append((embed(reverse_complement(s), bg, rng)[0], 0, "coding_ctx", "", f"{h}_mxrc"))
    gw = random_windows(bg, n_genomic * 3 // 4, rng) + random_windows(regions, n_genomic // 4, rng)
    rows += [(w, 0, "genomic", "", f"genomic_mx_{i}") for i, w in enumerate(gw) if set(w) <= set("ACGU")]
    s_, lab, kind, sp_, nm = zip(*rows, strict=True)
    return WindowSet(list(s_), np.array(lab), np.array(kind), np.array(sp_), np.array(nm),
                     np.array(["train"] * len(rows)), {"hairpins": len(hp), "coding": len(coding_train)})


def _kmers(seq: str, k: int) -> set[str]:
    return {seq[i : i + k] for i in range(len(seq) - k + 1)}


def strand_decoys(seed: int = 0, species: str = "hsa", k: int = 20, processes: int = 2) -> tuple[WindowSet, dict[str, np.ndarray]]:
    """Reverse complements of the hairpins as negatives ("strand decoys"), cached.

    A scan reads both strands, and the reverse complement of a pre-miRNA folds
    into a hairpin too (G-U wobbles become A-C mismatches, the rest pairs as
    before). Without these windows the classifier scores the antisense strand as
    high as the true one. Every ``species`` hairpin gives one decoy cropped like
    ``hairpin`` and one placed in genomic background like ``hairpin_ctx``, in
    the hairpin's own split (chr21 training or validation block), so validation
    measures strand discrimination on unseen families.

    A decoy that shares a ``k``-mer with any miRBase hairpin of the four
    species (:func:`load_hairpins`) is dropped: that antisense strand is itself
    an annotated miRNA locus.
    """
    return _cached_labelled(f"strand_decoys_seed{seed}_{species}_{k}.pkl",
                            lambda: strand_decoy_table(seed, species, k), processes)


def strand_decoy_table(seed: int = 0, species: str = "hsa", k: int = 20) -> WindowSet:
    """The windows of :func:`strand_decoys`, without RNAfold labels (not cached)."""
    rng = np.random.default_rng(seed + 2000)
    split = make_split(seed)
    names, seqs, sps = load_hairpins()
    known: set[str] = set()
    for s in seqs:
        known |= _kmers(s, k)
    chr21 = read_genome(data_dir() / "genomic" / "hg38_chr21_background_1Mb.fa")
    bg = {"train": chr21[slice(*CHR21_TRAIN)], "val": chr21[slice(*CHR21_VAL)]}
    rows = []
    n_dropped = 0
    for n, s, sp, sl in zip(names, seqs, sps, split["split"], strict=True):
        if sp != species or not set(s) <= set("ACGU"):
            continue
        rc = reverse_complement(s)
        if _kmers(rc, k) & known:
            n_dropped += 1
            continue
        rows.append((center_crop(rc), 0, "hairpin_rc", "", n + "_rc", sl))
        rows.append((embed(rc, bg[sl], rng)[0], 0, "hairpin_rc_ctx", "", n + "_rc", sl))
    s_, lab, kind, sp_, nm, spl = zip(*rows, strict=True)
    ws = WindowSet(list(s_), np.array(lab), np.array(kind), np.array(sp_), np.array(nm), np.array(spl),
                   {"dropped_antisense_loci": n_dropped})
    return ws


def benchmark_disjoint(
    table: dict[str, np.ndarray],
    reference: Sequence[str],
    reference_positives: Sequence[str],
    seed: int = 0,
    k: int = 20,
    jaccard_k: int = 8,
    jaccard: float = 0.3,
) -> np.ndarray:
    """Rows of a window table that share nothing with a benchmark (a mask).

    For a pre-training that a benchmark may then fine-tune and score: a row is
    dropped when its sequence shares a ``k``-mer (either strand) with any
    ``reference`` sequence, and when it belongs to a hairpin family touched by
    the benchmark's positives. A hairpin touches the benchmark when it shares a
    ``k``-mer with a positive or their ``jaccard_k``-mer Jaccard similarity is
    at least ``jaccard``; every hairpin of its cluster (:func:`make_split`:
    paralogs and orthologs) then goes, with the windows made from them
    (contexts, strand decoys, shuffles), whatever their sequence. Hairpins of
    the other animal species (:func:`animal_windows`) are outside those
    clusters: they go when they touch a positive themselves or share a
    :func:`family_key` with a dropped hairpin.

    Parameters
    ----------
    table
        Window arrays with ``codes``, ``lengths`` and ``name`` (a
        :func:`load_windows`-style table or a ``scripts/cascade_table.py`` one).
    reference
        Every benchmark sequence (positives and negatives).
    reference_positives
        The benchmark's pre-miRNAs.
    seed
        The seed of the family split whose clusters are used.
    """
    from .encoding import codes_to_str

    def norm(s: str) -> str:
        return s.upper().replace("T", "U")

    ref_kmers: set[str] = set()
    for s in map(norm, reference):
        ref_kmers |= _kmers(s, k) | _kmers(reverse_complement(s), k)
    seqs = [codes_to_str(c[:n]) for c, n in zip(table["codes"], table["lengths"], strict=True)]
    shares = np.array([not _kmers(s, k).isdisjoint(ref_kmers) for s in seqs], bool)

    names, hseqs, _ = load_hairpins()
    split = make_split(seed)
    cluster = dict(zip(split["names"], split["cluster"], strict=True))
    pos = [norm(s) for s in reference_positives]
    pos_kmers: set[str] = set()
    for s in pos:
        pos_kmers |= _kmers(s, k) | _kmers(reverse_complement(s), k)
    touched = {i for i, s in enumerate(hseqs) if not _kmers(s, k).isdisjoint(pos_kmers)}
    touched |= {i for i, _ in kmer_jaccard_pairs(hseqs, pos, jaccard_k, jaccard)}
    bad_clusters = {cluster.get(names[i]) for i in touched} - {None}
    bad_names = {n for n in names if cluster.get(n) in bad_clusters} | {names[i] for i in touched}
    # the other animal species (animal_windows) are not in the split's clusters: they go when
    # they touch a positive themselves or share a family key with a dropped cluster
    bad_fams = {family_key(n) for n in bad_names}
    other = other_animal_stem_loops()
    oseqs = [r["seq"] for r in other]
    hit = {i for i, s in enumerate(oseqs) if not _kmers(s, k).isdisjoint(pos_kmers)}
    hit |= {i for i, _ in kmer_jaccard_pairs(oseqs, pos, jaccard_k, jaccard)}
    bad_names |= {r["name"] for i, r in enumerate(other) if i in hit or family_key(r["name"]) in bad_fams}
    base = [re.sub(r"(_rc|_shuf)$", "", str(n)) for n in table["name"]]
    family = np.array([b in bad_names for b in base], bool)
    return ~shares & ~family


if __name__ == "__main__":  # pragma: no cover - build the cache from the command line
    ws, arr = load_windows()
    print(json.dumps({"meta": ws.meta, "counts": counts(ws)}, indent=1))
