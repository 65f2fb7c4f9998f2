"""SEWA in the AVEC 2019 Cross-cultural Emotion Sub-challenge (CES) layout: labels, frame mapping, splits.

Modules: ``config`` (:class:`SewaConfig`), ``labels`` (AVEC label files and their mapping to video frames),
``index`` (recordings as :class:`~data.datasets.affwild2.VideoRecord` s), ``folds`` (subject-disjoint fold
manifests and the three protocols). This package re-exports their public API.

On-disk layout (docs/design.md, "On-disk layouts")::

    ROOT/labels/<Partition>_<Culture>_<NN>.csv      Partition Train|Devel|Test, Culture DE|HU|CN (CN: Test only)
    ROOT/audio/<stem>.wav
    ROOT/video/<stem>.avi
    ROOT/cropped_aligned/<stem>/<frame:05d>.jpg     written by ``python -m data.prepare``; 1-based; absent = no face
    ROOT/meta/<stem>.json                           :class:`data.datasets.meta.VideoMeta`: fps and frame count of the video
    ROOT/folds_seed<seed>.json                      fold manifest of the ``folds`` protocol (written on first use)

A label file is ``;``-separated with the header ``name;timestamp;arousal;valence;liking`` and one row
per 0.1 s, e.g. ``'Devel_DE_01';0.000000;0.000000;0.000000;0.000000``. In the public AVEC 2019 devel
files the first timestamp is 0.0, the name is quoted with single quotes, and files hold 974 to 1768 rows
(97.3 to 176.7 s). The official baseline predictions use the same format but are padded to 1768 rows
(176.7 s, the last value repeated) for every recording; the scorer crops them to the labels.

Labels (10 Hz) are mapped to video frames (frame ``t``, 0-based, at ``t / fps`` s) by nearest-label
lookup or linear interpolation, after the usual annotator-delay compensation: an annotator reacts to
what they see with a lag, so the label at ``tau + delay`` describes the frame at ``tau``.
See :func:`labels_to_frames` for the edge policies.

The AVEC file names carry no subject id. Each AVEC recording shows one participant and, as far as the
challenge's documentation goes, nobody appears in two recordings, so by default every recording is its own
subject; a ``recording,subject`` CSV (``SewaConfig.subjects_file``) makes the folds subject-disjoint when
that assumption does not hold (e.g. with the full SEWA DB metadata).

Why a fold manifest: the SEWA five-fold person-independent protocol is only reproducible when every run
uses the same folds, so the folds are drawn once from a seed, written to a JSON file, and from then on
read back and checked against the data, never silently regenerated.
"""

from data.datasets.sewa.config import PROTOCOLS, SPLITS, SewaConfig
from data.datasets.sewa.folds import (
    check_manifest,
    make_fold_manifest,
    manifest_path,
    read_fold_manifest,
    read_subjects,
    split_recordings,
    write_fold_manifest,
)
from data.datasets.sewa.index import index_sewa, labelled_recordings
from data.datasets.sewa.labels import (
    CULTURES,
    DIMENSIONS,
    INVALID,
    METHODS,
    PARTITIONS,
    AvecLabels,
    label_path,
    labels_to_frames,
    nearest_index,
    parse_stem,
    read_avec_labels,
    unquote,
)

__all__ = [
    "CULTURES", "DIMENSIONS", "INVALID", "METHODS", "PARTITIONS", "PROTOCOLS", "SPLITS", "AvecLabels", "SewaConfig",
    "check_manifest", "index_sewa", "label_path", "labelled_recordings", "labels_to_frames", "make_fold_manifest",
    "manifest_path", "nearest_index", "parse_stem", "read_avec_labels", "read_fold_manifest", "read_subjects",
    "split_recordings", "unquote", "write_fold_manifest",
]
