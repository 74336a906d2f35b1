"""Who spoke when: speaker labels for one file's speech, then for its words and sentences.

Runs per file after recognition, on that file's own audio and speech regions, so batching can
never move a file's speakers. The steps:

1. Windows of 1.5 s every 0.75 s inside each speech region (FunASR's sizes), the last one
   aligned to the region's end; a region shorter than a window is one window of its own length,
   and one shorter than `min_region_s` gets no window (it takes its neighbours' speaker).
2. One embedding per window (asr/text/speaker_encoders.py).
3. Clustering, deterministic throughout (no unseeded randomness; same input, same labels):
   - a known count N: spherical k-means seeded by the N largest groups of the average-linkage
     tree. It runs at any length: FunASR sends every file under 20 windows (about 15 s) to
     speaker 0 even with a count given (#1986, #2574, #2944), and its k-means starts were
     unseeded (#1677);
   - `auto` on few windows (under `spectral_min`): average-linkage agglomerative clustering that
     joins clusters while their mean pairwise cosine similarity is at least `threshold`;
   - `auto` otherwise: spectral clustering on the affinity max(0, cosine - threshold), the count
     chosen by the largest eigengap of its normalised Laplacian (at most `max_speakers`), then
     the same average-linkage rule joins clusters that are still at least `threshold` alike.
   Work is bounded on long audio: past `max_points` windows, consecutive windows are averaged
   into at most `max_points` groups before any quadratic step, and every window is then given
   its nearest centroid (FunASR #3514 ran a dense eigensolver on 10,639 windows).
4. A window that disagrees with both neighbours in its region takes theirs; then each window
   owns the time nearest its centre, giving turns; labels become S1, S2, ... in order of first
   appearance.

Words get the speaker of the turn they overlap most (the nearest one when they overlap none),
and `split_at_speaker_changes` cuts any sentence where the speaker changes between two words,
so no sentence spans two speakers. Named reference clips (OpenAI's `known_speaker_names[]` and
`known_speaker_references[]`) are matched to the found speakers by centroid similarity.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .speaker_encoders import RATE, SpeakerEncoder, normalize

log = logging.getLogger(__name__)

SEED = 20241201  # the one seed every random choice here derives from
DEFAULT_THRESHOLD = 0.5  # when neither the options nor an encoder say


@dataclass(frozen=True)
class SpeakerOptions:
    """What `speakers` and its bounds ask for. `count` None is `auto`."""

    count: int | None = None
    max_speakers: int = 8
    # auto: clusters whose windows are on average at least this alike (cosine) are one speaker;
    # None takes the encoder's own (SpeakerEncoder.default_threshold)
    threshold: float | None = None
    window_s: float = 1.5
    shift_s: float = 0.75
    min_region_s: float = 0.3
    spectral_min: int = 20  # auto uses agglomerative clustering below this many windows
    max_points: int = 1000  # windows clustered directly; more are grouped first (bounds time and memory)

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise ValueError(f"a speaker count must be at least 1, not {self.count}")
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"the speaker threshold is a cosine similarity in [-1, 1], not {self.threshold}")
        if self.max_speakers < 1:
            raise ValueError(f"speakers.max must be at least 1, not {self.max_speakers}")
        if not 0.0 < self.shift_s <= self.window_s:
            raise ValueError("the window shift must be positive and at most the window")


@dataclass
class SpeakerTurn:
    start_s: float
    end_s: float
    speaker: str


@dataclass
class Diarization:
    """A file's speakers. `speakers` lists the labels in order of first appearance; `windows`,
    `window_labels` and `centroids` are kept for naming speakers and for inspection."""

    turns: list[SpeakerTurn]
    speakers: list[str]
    method: str  # none, single, kmeans, agglomerative, spectral
    windows: list[tuple[float, float]] = field(default_factory=list)
    window_labels: list[str] = field(default_factory=list)
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def speaker_at(self, start_s: float, end_s: float) -> str | None:
        """The speaker who holds most of [start_s, end_s], else the nearest turn's."""
        return _speaker_for(self.turns, start_s, end_s)


# ---------------------------------------------------------------------------------------------
# windows


def speech_windows(regions_s: Sequence[tuple[float, float]], total_samples: int,
                   options: SpeakerOptions = SpeakerOptions()) -> list[tuple[int, int]]:
    """[start, end) sample windows inside the speech regions (seconds), in time order."""
    size, shift = round(options.window_s * RATE), round(options.shift_s * RATE)
    shortest = round(options.min_region_s * RATE)
    windows: list[tuple[int, int]] = []
    for start_s, end_s in sorted(regions_s):
        start = max(0, int(round(start_s * RATE)))
        end = min(total_samples, int(round(end_s * RATE)))
        if end - start < max(1, shortest):
            continue
        if end - start <= size:
            windows.append((start, end))
            continue
        first = start
        while first + size < end:
            windows.append((first, first + size))
            first += shift
        windows.append((end - size, end))
    return sorted(set(windows))


# ---------------------------------------------------------------------------------------------
# clustering


def cluster(embeddings: np.ndarray, options: SpeakerOptions = SpeakerOptions()) -> tuple[np.ndarray, str]:
    """A cluster index per row of `embeddings`, and the method used. Deterministic: the same rows
    in the same order give the same labels on every run."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int), "none"
    x = normalize(np.asarray(embeddings, dtype=np.float64)).astype(np.float64)
    threshold = DEFAULT_THRESHOLD if options.threshold is None else options.threshold
    points, grouped = _grouped(x, options.max_points)
    if options.count is not None:
        k = min(options.count, len(points))
        if k <= 1:
            return np.zeros(n, dtype=int), "single"
        # k-means seeded by the k largest groups of the average-linkage tree: no random start
        # (FunASR #1677), and none of the lopsided optima that k-means++ starts fell into on real
        # voices, nor a lone odd window (a laugh, an overlap) taking a speaker's place.
        centroids = spherical_kmeans(points, large_cluster_seeds(points, k))
        method = "kmeans"
    else:
        limit = max(1, options.max_speakers)
        if len(points) < options.spectral_min:
            labels = agglomerative(points, threshold=threshold, max_clusters=limit)
            method = "agglomerative"
        else:
            labels = merge_similar(points, spectral(points, threshold, limit), threshold)
            method = "spectral"
        if labels.max() == 0:
            return np.zeros(n, dtype=int), "single"
        centroids = _centroids(points, labels)
        if grouped is None:
            return _renumber(labels), method
    return _renumber(_nearest(x, centroids)), method


def _grouped(x: np.ndarray, max_points: int) -> tuple[np.ndarray, bool | None]:
    """At most `max_points` rows: consecutive windows averaged in equal runs when there are more
    (neighbouring windows are mostly one voice, and the average is a cleaner sample of it)."""
    n = len(x)
    if n <= max_points:
        return x, None
    groups = (np.arange(n) * max_points) // n
    sums = np.zeros((max_points, x.shape[1]))
    np.add.at(sums, groups, x)
    return normalize(sums).astype(np.float64), True


def _centroids(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = int(labels.max()) + 1
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    return normalize(sums).astype(np.float64)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return np.argmax(x @ centroids.T, axis=1)  # ties: the lowest index


def spherical_kmeans(x: np.ndarray, centroids: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Cosine k-means from the given unit `centroids`: at most `iterations` rounds of
    assign-and-average, so the cost is bounded by iterations x n x k. A cluster that empties
    keeps its last centroid."""
    centroids = np.asarray(centroids, dtype=np.float64).copy()
    labels = None
    for _ in range(iterations):
        new = _nearest(x, centroids)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        kept = sums.any(axis=1)
        centroids[kept] = normalize(sums[kept])
    return centroids


def _average_tree(x: np.ndarray) -> np.ndarray:
    """SciPy's average-linkage tree of unit rows on cosine distance (nearest-neighbour chain,
    O(n^2)). Rounding keeps float noise in the distances from reordering exact ties."""
    from scipy.cluster.hierarchy import linkage

    distances = np.round(np.clip(1.0 - x @ x.T, 0.0, 2.0), 10)
    return linkage(distances[np.triu_indices(len(x), 1)], method="average")


def agglomerative(x: np.ndarray, threshold: float | None = None, max_clusters: int | None = None,
                  k: int | None = None) -> np.ndarray:
    """Average-linkage clustering of unit rows on cosine similarity: clusters join while their
    mean pairwise similarity is at least `threshold` (and beyond that while there are more than
    `max_clusters`), or until exactly `k` remain."""
    from scipy.cluster.hierarchy import fcluster

    n = len(x)
    if n < 2:
        return np.zeros(n, dtype=int)
    tree = _average_tree(x)
    if k is not None:
        labels = fcluster(tree, k, criterion="maxclust")
    else:
        labels = fcluster(tree, 1.0 - threshold, criterion="distance")
        if max_clusters is not None and labels.max() > max_clusters:
            labels = fcluster(tree, max_clusters, criterion="maxclust")
    return _renumber(labels - 1)


def large_cluster_seeds(x: np.ndarray, k: int, share: float = 0.05) -> np.ndarray:
    """k starting centroids: the tree cut ever finer until k of its groups each hold at least
    3 windows and `share` of all; their centroids, largest group first. Falls back to the cut
    at k when the file is too short for that."""
    from scipy.cluster.hierarchy import fcluster

    n = len(x)
    smallest = max(3, int(np.ceil(share * n)))
    if n < 2 or k * smallest > n:
        return _centroids(x, agglomerative(x, k=k))
    tree = _average_tree(x)
    for cut in range(k, n + 1):
        labels = fcluster(tree, cut, criterion="maxclust") - 1
        sizes = np.bincount(labels)
        large = np.flatnonzero(sizes >= smallest)
        if len(large) >= k:
            chosen = large[np.argsort(-sizes[large], kind="stable")][:k]
            return _centroids(x, labels)[chosen]
    return _centroids(x, agglomerative(x, k=k))


def spectral(x: np.ndarray, threshold: float, max_clusters: int) -> np.ndarray:
    """Spectral clustering with the count chosen by the eigengap. The affinity keeps only what
    lies above the threshold (cosine - threshold, floored at 0), so pairs that are plainly not
    one voice do not link; the count is where the normalised Laplacian's first `max_clusters`+1
    eigenvalues jump most; k-means on the rows of those eigenvectors, seeded, gives the labels."""
    from scipy.linalg import eigh

    n = len(x)
    affinity = np.clip(x @ x.T - threshold, 0.0, None)
    np.fill_diagonal(affinity, 0.0)
    degree = affinity.sum(axis=1)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-10))
    laplacian = np.eye(n) - scale[:, None] * affinity * scale[None, :]
    top = min(max_clusters + 1, n)
    values, vectors = eigh(laplacian, subset_by_index=[0, top - 1])
    count = int(np.argmax(np.diff(values))) + 1 if top > 1 else 1
    if count <= 1:
        return np.zeros(n, dtype=int)
    rows = normalize(vectors[:, :count]).astype(np.float64)
    seeds = _kmeans_pp(rows, count, np.random.default_rng(SEED))
    return _renumber(_nearest(rows, spherical_kmeans(rows, seeds)))


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ starting centroids, drawn from a generator with a fixed seed."""
    chosen = [int(rng.integers(len(x)))]
    distance = 1.0 - x @ x[chosen[0]]
    for _ in range(1, k):
        weights = np.clip(distance, 0.0, None) ** 2
        total = weights.sum()
        pick = int(rng.choice(len(x), p=weights / total)) if total > 0 else int(rng.integers(len(x)))
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - x @ x[pick])
    return x[chosen].copy()


def merge_similar(x: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Join clusters whose mean pairwise similarity is at least `threshold`, most alike first:
    the average-linkage rule on top of the spectral partition, so `auto` means the same thing
    however long the file is."""
    labels = _renumber(labels)
    while labels.max() > 0:
        k = int(labels.max()) + 1
        sums = np.zeros((k, x.shape[1]))
        np.add.at(sums, labels, x)
        sizes = np.bincount(labels, minlength=k).astype(np.float64)
        mean_similarity = (sums @ sums.T) / np.outer(sizes, sizes)
        np.fill_diagonal(mean_similarity, -np.inf)
        a, b = divmod(int(np.argmax(mean_similarity)), k)
        if mean_similarity[a, b] < threshold:
            break
        labels = _renumber(np.where(labels == max(a, b), min(a, b), labels))
    return labels


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Labels 0, 1, ... in order of first appearance."""
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(label), len(order)) for label in labels], dtype=int)


# ---------------------------------------------------------------------------------------------
# the whole step


def diarize(samples: np.ndarray, regions_s: Sequence[tuple[float, float]], encoder: SpeakerEncoder,
            options: SpeakerOptions = SpeakerOptions()) -> Diarization:
    """Speakers of one recording: 16 kHz mono float32 `samples` and its speech regions in
    seconds (the VAD's, after recognition). Never raises on short or empty input."""
    started = time.perf_counter()
    if options.threshold is None:
        options = dataclasses.replace(options, threshold=encoder.default_threshold)
    regions = _clean_regions(regions_s, len(samples) / RATE)
    windows = speech_windows(regions, len(samples), options)
    if not windows:
        turns = [SpeakerTurn(s, e, "S1") for s, e in regions]
        return Diarization(turns, ["S1"] if turns else [], "none" if not turns else "single",
                           seconds=time.perf_counter() - started)
    embeddings = encoder.embed_windows(samples, windows)
    labels, method = cluster(embeddings, options)
    labels = _smooth(windows, labels)
    labels = _renumber(labels)
    names = [f"S{label + 1}" for label in labels]
    spans = [(s / RATE, e / RATE) for s, e in windows]
    turns = _turns(spans, names, regions)
    speakers = list(dict.fromkeys(t.speaker for t in turns))
    centroids = {name: normalize(embeddings[np.array(names) == name].mean(axis=0, keepdims=True))[0]
                 for name in speakers}
    return Diarization(turns, speakers, method, spans, names, centroids, time.perf_counter() - started)


def _clean_regions(regions_s: Sequence[tuple[float, float]], duration_s: float) -> list[tuple[float, float]]:
    """The regions inside the recording, sorted, overlaps joined, empty ones dropped."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted((max(0.0, float(s)), min(duration_s, float(e))) for s, e in regions_s):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _smooth(windows: list[tuple[int, int]], labels: np.ndarray) -> np.ndarray:
    """A lone window between two agreeing neighbours of its region takes their label: one
    window is 1.5 s, shorter than any turn worth a label of its own."""
    out = labels.copy()
    for i in range(1, len(labels) - 1):
        same_region = windows[i - 1][1] > windows[i][0] and windows[i][1] > windows[i + 1][0]
        if same_region and labels[i - 1] == labels[i + 1] != labels[i]:
            out[i] = labels[i - 1]
    return out


def _turns(spans: list[tuple[float, float]], names: list[str],
           regions: list[tuple[float, float]]) -> list[SpeakerTurn]:
    """Each region split among its windows at the midpoints between their centres; a region
    without windows goes to the speaker nearest in time. Neighbouring pieces of one speaker
    that touch are joined. Windows lie inside regions, in time order, so this is one pass."""
    centres = np.array([(s + e) / 2 for s, e in spans])
    owner = np.searchsorted([start for start, _ in regions], [s for s, _ in spans], side="right") - 1
    members: dict[int, list[int]] = {}
    for index, region in enumerate(owner.tolist()):
        members.setdefault(region, []).append(index)
    pieces: list[tuple[float, float, str]] = []
    for number, (start, end) in enumerate(regions):
        inside = members.get(number)
        if not inside:
            nearest = int(np.argmin(np.abs(centres - (start + end) / 2)))
            pieces.append((start, end, names[nearest]))
            continue
        middles = [(centres[a] + centres[b]) / 2 for a, b in zip(inside, inside[1:], strict=False)]
        cuts = [start, *middles, end]
        for index, i in enumerate(inside):
            low, high = max(start, cuts[index]), min(end, cuts[index + 1])
            if high > low:
                pieces.append((low, high, names[i]))
    turns: list[SpeakerTurn] = []
    for start, end, name in pieces:
        if turns and turns[-1].speaker == name and start - turns[-1].end_s <= 1e-6:
            turns[-1].end_s = float(end)
        else:
            turns.append(SpeakerTurn(float(start), float(end), name))
    return turns


# ---------------------------------------------------------------------------------------------
# words and sentences


def _speaker_for(turns: Sequence[SpeakerTurn], start_s: float, end_s: float,
                 ends: Sequence[float] | None = None) -> str | None:
    """The speaker holding most of [start_s, end_s] (the earlier on a tie), else the nearest
    turn's. Turns are in time order and do not overlap, so a bisection finds the candidates;
    `ends` (the turns' end times) may be passed in to save rebuilding it per word."""
    if not turns:
        return None
    start_s, end_s = min(start_s, end_s), max(start_s, end_s)
    ends = [t.end_s for t in turns] if ends is None else ends
    first = bisect.bisect_right(ends, start_s)  # the first turn ending after the word starts
    best, best_overlap = None, 0.0
    index = first
    while index < len(turns) and turns[index].start_s < end_s:
        overlap = min(end_s, turns[index].end_s) - max(start_s, turns[index].start_s)
        if overlap > best_overlap + 1e-9:
            best, best_overlap = turns[index].speaker, overlap
        index += 1
    if best is not None:
        return best
    middle = (start_s + end_s) / 2
    nearby = [i for i in (first - 1, first) if 0 <= i < len(turns)]
    gaps = [max(turns[i].start_s - middle, middle - turns[i].end_s, 0.0) for i in nearby]
    return turns[nearby[int(np.argmin(gaps))]].speaker  # ties: the earlier turn


def assign_words(times: Sequence[tuple[float, float]], diarization: Diarization) -> list[str | None]:
    """The speaker of each timed word ((start_s, end_s) pairs), one per word whatever the words
    are: a list as long as `times`, so text, marks and times can never disagree in length with
    it (FunASR #2393). None only when the file has no speaker turns at all."""
    ends = [t.end_s for t in diarization.turns]
    return [_speaker_for(diarization.turns, float(s), float(e), ends) for s, e in times]


def split_at_speaker_changes(groups: Sequence[Sequence[int]],
                             speakers: Sequence[str | None]) -> list[list[int]]:
    """Sentences (groups of word indices, in order) cut wherever the speaker changes between
    two words of one group; the words stay in order and each appears exactly once."""
    out: list[list[int]] = []
    for group in groups:
        current: list[int] = []
        for index in group:
            if current and speakers[index] != speakers[current[-1]]:
                out.append(current)
                current = []
            current.append(index)
        if current:
            out.append(current)
    return out


def group_speaker(group: Sequence[int], speakers: Sequence[str | None]) -> str | None:
    """The speaker of a sentence cut by `split_at_speaker_changes` (all its words agree)."""
    return speakers[group[0]] if group else None


# ---------------------------------------------------------------------------------------------
# named speakers


@dataclass
class SpeakerMatch:
    label: str  # S1, S2, ...
    name: str
    similarity: float


def match_known_speakers(diarization: Diarization, references: dict[str, np.ndarray],
                         min_similarity: float = 0.6) -> list[SpeakerMatch]:
    """Give found speakers the names of reference voices (name -> embedding of its clip): the
    most alike pair first, each name and each speaker used once, and only pairs at least
    `min_similarity` alike. Speakers left over keep their S labels."""
    pairs = []
    for label, centroid in diarization.centroids.items():
        for order, (name, reference) in enumerate(references.items()):
            similarity = float(np.dot(centroid, normalize(np.asarray(reference)[None])[0]))
            pairs.append((-similarity, diarization.speakers.index(label), order, label, name, similarity))
    matches, used_labels, used_names = [], set(), set()
    for _, _, _, label, name, similarity in sorted(pairs):
        if similarity < min_similarity or label in used_labels or name in used_names:
            continue
        matches.append(SpeakerMatch(label, name, round(similarity, 4)))
        used_labels.add(label)
        used_names.add(name)
    return matches


def rename(diarization: Diarization, names: dict[str, str]) -> Diarization:
    """The same diarization with labels replaced (S1 -> a name); unnamed labels stay."""
    def new(label: str) -> str:
        return names.get(label, label)

    return Diarization(
        [SpeakerTurn(t.start_s, t.end_s, new(t.speaker)) for t in diarization.turns],
        [new(s) for s in diarization.speakers], diarization.method, list(diarization.windows),
        [new(s) for s in diarization.window_labels],
        {new(k): v for k, v in diarization.centroids.items()}, diarization.seconds)
