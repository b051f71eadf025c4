"""`ReaderConfig`: how a reader cuts windows and reads answers off them, saved beside its weights
as `reader_config.json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from korqa.reader.features import FeatureConfig
from korqa.reader.predict import PredictConfig


@dataclass
class ReaderConfig(PredictConfig, FeatureConfig):
    """The windows (`FeatureConfig`'s fields) and the reading knobs (`PredictConfig`'s), one
    flat set: a ReaderConfig is both, so it goes wherever either is asked for. Each knob is
    declared once, in its own class."""

    @classmethod
    def with_windows(cls, windows: FeatureConfig) -> ReaderConfig:
        """The default reading knobs over `windows`' windows (a training run's config, say,
        which holds the windows among its own settings)."""
        return cls(**{field.name: getattr(windows, field.name) for field in fields(FeatureConfig)})

    def fitted(self, max_length: int) -> ReaderConfig:
        """This config with windows no longer than a model with `max_length` positions reads;
        the stride and the question stay within a half and a quarter of the window."""
        length = min(self.max_seq_length, max_length)
        return replace(self, max_seq_length=length, doc_stride=min(self.doc_stride, length // 2),
                       max_query_length=min(self.max_query_length, length // 4))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str = "reader config") -> ReaderConfig:
        """A config from `data` (a JSON object; missing fields keep their defaults, so a file
        that holds only the windows reads as before). Errors name `source` and the field."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object of reader settings")
        known = {field.name: field for field in fields(cls)}
        data = _without_retired(data, source)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown field {unknown[0]!r}; the fields are "
                             f"{', '.join(known)}")
        values = {name: _checked(source, name, value, getattr(cls, name))
                  for name, value in data.items()}
        return cls(**values)


# Fields older korqa versions wrote, no longer read: what decides in their place.
RETIRED = {"no_answer_threshold": "the pipeline's --threshold decides when not to answer"}


def _without_retired(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`data` without retired fields left at their old default (None); a retired field that
    was set is an error naming what replaced it."""
    for name, replacement in RETIRED.items():
        if data.get(name) is not None:
            raise ValueError(f"{source}: field {name!r} is no longer read ({replacement}); "
                             "remove it")
    return {name: value for name, value in data.items() if name not in RETIRED}


def _checked(source: str, name: str, value: object, default: object) -> object:
    """`value` if it has the type of the field's `default` (None allowed where the default is
    None or the field is a threshold), else a clear error."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:  # float | None fields (stop_confidence)
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        value = None if value is None else float(value)
    if not ok:
        raise ValueError(f"{source}: field {name!r} has the wrong type ({value!r}); "
                         f"expected one like {default!r}")
    return value


@dataclass(kw_only=True)
class CalibrateConfig:
    """`korqa calibrate` (korqa.reader.calibrate.calibrate): the questions a reader's int8
    activation ranges are measured on. Here, not beside the calibration, so that `korqa
    calibrate --help` imports no torch."""

    model: str = field(metadata={"help": "reader directory", "metavar": "DIR"})
    data: str = field(metadata={"help": "SQuAD-format JSON (KorQuAD dev)"})
    split: Literal["train", "validation"] = field(default="train", metadata={
        "help": "questions to calibrate on (korqa's split rule; never the test split)"})
    limit: int = field(default=64, metadata={"help": "questions (random, seeded)",
                                              "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "random seed of the questions"})
