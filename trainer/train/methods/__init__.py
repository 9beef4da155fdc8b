"""Training methods (train.method), each behind the Method protocol (method.py): SFT (sft.py), DPO and ORPO
(preference.py), KTO (kto.py). Another method (GRPO) is a module of its own, a line here, and its name in config's
choices."""

from trainer.config import Config
from trainer.train.methods.kto import KTO
from trainer.train.methods.method import Method
from trainer.train.methods.preference import DPO, ORPO
from trainer.train.methods.sft import SFT

METHODS: dict[str, Method] = {each.name: each for each in (SFT(), DPO(), ORPO(), KTO())}


def of(config: Config) -> Method:
    """The method `config` trains with (train.method)."""
    return METHODS[config.train.method]
