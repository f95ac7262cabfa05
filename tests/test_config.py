from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from modnas_ops.config import ConfigError, FieldError, config_to_dict, flatten_config, load_config
from modnas_ops.errors import UserError


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    devices: tuple[str, ...] = ("a", "b")

    def __post_init__(self) -> None:
        if self.lr < 0:
            raise FieldError("lr", f"must be >= 0, got {self.lr}")


@dataclass(frozen=True)
class Outer:
    name: str = "run"
    epochs: int = 2
    sampler: Literal["reinmax", "gdas"] = "reinmax"
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    table: str | None = None
    verbose: bool = False
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


def test_defaults_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 5\ninner:\n  lr: 0.5\n")
    cfg = load_config(Outer, p, ["inner.devices=x,y,z", "verbose=true", "sampler=gdas", "split=[0.5, 0.25, 0.25]"])
    assert cfg == Outer(
        epochs=5,
        sampler="gdas",
        split=(0.5, 0.25, 0.25),
        verbose=True,
        inner=Inner(lr=0.5, devices=("x", "y", "z")),
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=0", "epochs must be >= 1"),
        ("epochs=two", "epochs: expected an integer"),
        ("sampler=sgd", "sampler: 'sgd' is not one of"),
        ("inner.nope=1", "unknown config field 'inner.nope'"),
        ("epochs", "must look like key=value"),
        ("verbose=maybe", "verbose: expected true/false"),
        ("split=[1, 2]", "split: expected 3 values, got 2"),
        ("split=[1, 2, x]", r"split\[2\]: expected a number"),
        ("inner.lr=nan", "inner.lr: expected a finite number, got 'nan'"),
        ("inner.lr=.inf", "inner.lr: expected a finite number"),
        ("inner.lr=-1", r"^inner.lr: must be >= 0, got -1.0$"),
    ],
)
def test_bad_fields_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, [override])


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(Outer, bad)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x80\x81\xfe\xff\x00")
    with pytest.raises(ConfigError, match=f"config file {binary} is not a text"):
        load_config(Outer, binary)


def test_config_errors_are_user_errors():
    assert issubclass(ConfigError, UserError) and issubclass(FieldError, ConfigError)


def test_dict_and_flatten():
    cfg = Outer()
    assert config_to_dict(cfg)["inner"] == {"lr": 0.1, "devices": ["a", "b"]}
    assert flatten_config(cfg)["inner.devices"] == "a,b"
    assert flatten_config(cfg)["table"] == "None"


def _entry_class(name: str) -> type:
    from modnas_ops.baselines.config import BaselinesConfig
    from projects.fit_predictor_job import FitPredictorConfig
    from projects.profile import ProfileConfig
    from projects.search_job import SearchRunConfig
    from projects.train_supernet_job import TrainSupernetConfig
    from projects.true_front import TrueFrontConfig

    if name == "search_supernet_pretrain.yaml":
        return TrainSupernetConfig
    prefixes = {"search": SearchRunConfig, "baselines": BaselinesConfig, "fit_predictor": FitPredictorConfig,
                "profile": ProfileConfig, "true_front": TrueFrontConfig}  # fmt: skip
    return next(cls for prefix, cls in prefixes.items() if name.startswith(prefix))


CONFIGS = Path(__file__).resolve().parents[1] / "projects" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_validates_against_its_entry(name: str) -> None:
    cfg = load_config(_entry_class(name), CONFIGS / name)
    assert type(cfg) is _entry_class(name)
