"""The sequence systems' section (``sequence:``): how a baseline system (docs/baselines.md) other than ALN, or ALN-T's head, trains
on whole recordings, and each system's own settings under it (``sequence.pandit``, ``sequence.raju``,
``sequence.aminbeidokhti``, ``sequence.temporal_conv``).

It validates itself like every section of the run configuration (``runconfig.py`` composes them); the checks
that need the data (feature width, face maps) are the systems' own, when their models are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from baselines.aminbeidokhti import AminbeidokhtiConfig
from baselines.pandit import PanditConfig
from baselines.raju import RajuConfig
from baselines.temporal_conv import TemporalConvConfig

FEATURES = ("egemaps", "egemaps_hop", "avec", "aln")
ALN_PARTS = ("z", "audio", "cd", "va")
#: the systems whose sections sit under ``sequence:`` (before, they were top-level sections)
SYSTEM_SECTIONS = ("pandit", "raju", "aminbeidokhti", "temporal_conv")


@dataclass
class SequenceSection:
    """The sequence baselines' training (``system`` other than aln): whole recordings, 1 - CCC."""

    features: str = "egemaps"      # per-frame inputs: egemaps | egemaps_hop | avec | aln (training/sequence_inputs.py)
    features_dir: str = ""         # features=aln: the folder of python -m training.export_features; =avec: the CSVs
    max_gap_s: float = 0.5         # features=avec: a frame farther than this from any feature row is an error
    aln_checkpoint: str = ""       # features=aln: export from this ALN checkpoint into features_dir on the fly
    aln_parts: list[str] = field(default_factory=list)   # features=aln: keep only these of z, audio, cd, va; [] = all
    maps: str = "none"             # per-frame maps for spatial attention: none | faces (crops at face_size px)
    face_size: int = 32
    chunk: int = 0                 # train on a random chunk of at most this many steps per recording; 0 = whole
    delay_valence: float = 0.0     # annotator-delay compensation in seconds (Pandit et al.: 2.8 on SEWA)
    delay_arousal: float = 0.0     # (Pandit et al.: 4.0 on SEWA)
    liking: bool = False           # also predict liking, where the recordings have it (SEWA; Raju et al.)
    delay_liking: float = 0.0
    recordings: int = 8            # recordings per batch (whole sequences, padded)
    predict_chunk: int = 4096      # prediction/validation windows of this many steps (+ the model's context); 0 = whole
    predict_context: int = 0       # Raju's RNNs: 0 = exact (RNN over whole recordings); N = windows of N steps of context
    optimizer: str = "rmsprop"     # rmsprop (Pandit et al.) | adam
    lr: float = 1e-3
    l1: float = 0.0                # L1 penalty on the single filter (Pandit et al.'s optional sparsity term)
    pandit: PanditConfig = field(default_factory=PanditConfig)
    raju: RajuConfig = field(default_factory=RajuConfig)
    aminbeidokhti: AminbeidokhtiConfig = field(default_factory=AminbeidokhtiConfig)
    temporal_conv: TemporalConvConfig = field(default_factory=TemporalConvConfig)

    def validate(self) -> None:
        checks = [
            (self.features in FEATURES, f"sequence.features must be one of {FEATURES}, got {self.features!r}"),
            (self.features not in ("aln", "avec") or bool(self.features_dir), f"sequence.features={self.features} "
             "needs sequence.features_dir (the AVEC feature CSVs, or the folder written by "
             "python -m training.export_features)"),
            (set(self.aln_parts) <= set(ALN_PARTS),
             f"sequence.aln_parts must be among {ALN_PARTS}, got {self.aln_parts}"),
            (min(self.delay_valence, self.delay_arousal, self.delay_liking) >= 0, "sequence.delay_* are seconds >= 0"),
            (self.recordings >= 1, "sequence.recordings must be >= 1"),
            (self.predict_chunk >= 0 and self.predict_context >= 0,
             "sequence.predict_chunk and sequence.predict_context must be >= 0"),
            (self.maps in ("none", "faces"), f"sequence.maps must be none or faces, got {self.maps!r}"),
            (self.face_size >= 8 and self.chunk >= 0, "sequence.face_size must be >= 8 and sequence.chunk >= 0"),
            (self.optimizer in ("rmsprop", "adam"),
             f"sequence.optimizer must be rmsprop or adam, got {self.optimizer!r}"),
            (self.lr > 0 and self.l1 >= 0, "sequence.lr must be > 0 and sequence.l1 >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
