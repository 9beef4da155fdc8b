"""Training that starts from another run's adapter (--from RUN, model.from_run): the usual SFT -> DPO path.

The new run trains that adapter further (its LoRA shape: r, alpha, target modules), on the run's base model. For DPO
the reference model is the adapter as it starts, the SFT model: TRL 1.14.2 copies a PEFT model's adapter into a frozen
"ref" adapter when it gets no ref_model (DPOTrainer.__init__), and scores the reference with it. A fresh adapter's copy
gives the base model's outputs (LoRA's B starts at zero), so without --from the reference is the base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config import Config
from trainer.errors import UserError
from trainer.runs.run_dir import RunDir, is_run_dir

# What the adapter fixes about the run that trains it further: taken from RUN's config.toml.
ADAPTER_SHAPE = ("lora.r", "lora.alpha", "lora.target_modules", "lora.bias", "lora.use_rslora", "lora.dropout")


def find(name: str) -> RunDir:
    """The finished run `name` names, with its adapter; a UserError naming what is wrong otherwise."""
    path = Path(name).expanduser()
    if not path.exists():
        raise UserError(f"--from {name}: no such run directory", "Name the folder of a finished run "
                        "(`python -m trainer runs` lists them).")
    if not is_run_dir(path):
        raise UserError(f"--from {name}: {path} is not a run directory (it has no status.json or launch.json)",
                        "Name the folder of a finished run, as `python -m trainer runs` lists them.")
    run = RunDir(path.resolve())
    if not (run.adapter / "adapter_model.safetensors").is_file() or not run.config.is_file():
        state = run.read_status().get("state", "unknown")
        raise UserError(f"--from {name}: the run has no finished adapter (its state: {state})",
                        f"Finish it first (python -m trainer --resume --run-dir {path}), or start from a "
                        "completed run.")
    return run


def saved(run: RunDir) -> dict[str, Any]:
    """RUN's config (RunDir.read_config) as {"section.field": value}."""
    table = run.read_config().to_dict()
    return {f"{section}.{key}": value for section, fields in table.items() if isinstance(fields, dict)
            for key, value in fields.items()}


def settings(name: str, explicit: set[str]) -> dict[str, Any]:
    """The settings a run --from `name` takes from it: where it starts, and the base model and LoRA shape that the
    adapter was trained with, except those given on the command line (check() then refuses a different one)."""
    run = find(name)
    values = saved(run)
    taken = {key: values[key] for key in ("model.name", *ADAPTER_SHAPE) if key in values and key not in explicit}
    return {"model.from_run": str(run.path), **taken}


def check(config: Config) -> Path | None:
    """The adapter folder model.from_run starts from (None without it), after checking that it is there and fits:
    the same base model and LoRA shape. Runs at every start, a resume too (the run may have gone meanwhile)."""
    if not config.model.from_run:
        return None
    run = find(config.model.from_run)
    values = saved(run)
    base = values.get("model.name")
    if base != config.model.name:
        raise UserError(f"--from {run.path}: that run trained an adapter of {base}, and this run's model is "
                        f"{config.model.name}", f"Leave --model out (the run's base model is then used), or "
                        f"--model {base}.")
    for key in ADAPTER_SHAPE:
        section, field = key.split(".")
        ours = getattr(getattr(config, section), field)
        theirs = tuple(values[key]) if isinstance(ours, tuple) else values.get(key)
        if key in values and theirs != ours:
            raise UserError(f"--from {run.path}: its adapter has {key} = {theirs!r}, and this run asks for {ours!r}",
                            f"Drop --set {field}: the adapter trained further keeps its shape.")
    return run.adapter
