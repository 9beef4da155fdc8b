"""Standard benchmarks (MMLU, GSM8K, HellaSwag, ...) and local task files through EleutherAI's lm-evaluation-harness
(the lm-eval extra), its Python API on the model eval has loaded: the same weights, base (adapter off) and tuned."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainer.errors import UserError

INSTALL = 'pip install -e ".[lm-eval]"'
CHUNK_REQUESTS = 128  # requests per call into lm-eval's model: the bar moves, its batching stays
BATCH_ROWS = 8


def version() -> str:
    """lm-eval's version; a UserError naming the install where the extra is missing."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        found = installed("lm_eval")
        import lm_eval  # noqa: F401 (imports, not only installed)
    except (ImportError, PackageNotFoundError) as e:
        raise UserError(f"--tasks runs lm-evaluation-harness, which is not installed ({e})",
                        f"{INSTALL} (the lm-eval extra), then run the same command again.") from None
    return found


@contextlib.contextmanager
def quiet_bars() -> Iterator[None]:
    """lm-eval's and datasets' own tqdm bars (on stderr) out of sight: they would scribble over eval's bars, which
    count lm-eval's requests instead. Their errors still arrive as exceptions, their warnings in the log."""
    with open(os.devnull, "w") as nowhere, contextlib.redirect_stderr(nowhere):
        yield


def load(spec: str) -> dict[str, Any]:
    """The task `spec` names (a name lm-eval knows, or a YAML task file) built and its data read, before any model
    loads: a task whose data is on the Hub downloads it here, and fails here where the Hub is out of reach. lm-eval's
    `tasks`, `groups` and `group_map` of it, and the `manager` that built them."""
    from lm_eval.tasks import TaskManager

    path = Path(spec)
    is_file = path.suffix in (".yaml", ".yml")
    if is_file and not path.is_file():
        raise UserError(f"task file {spec} does not exist", "Give a YAML task file (docs/evaluation.md shows one) "
                        "or a task name lm-eval knows (lm-eval ls tasks).")
    try:
        # a task file's data_files are found beside it, wherever the command runs
        with contextlib.chdir(path.resolve().parent) if is_file else contextlib.nullcontext(), quiet_bars():
            # lm-eval's index of its own tasks takes seconds: a task file does without, with the task files beside
            # it indexed instead (a group file names them, an include: reads them)
            manager = TaskManager(include_path=str(path.resolve().parent) if is_file else None,
                                  include_defaults=not is_file)
            return {**manager.load([name_in(manager, path) if is_file else spec]), "manager": manager}
    except KeyError as e:
        raise UserError(f"lm-eval cannot find task {spec!r} ({e})", "Check the name (lm-eval ls tasks lists them), or "
                        "give a YAML task file's path ending in .yaml.") from None
    except FileNotFoundError as e:
        raise UserError(f"task {spec}: {e}", "A task file's data_files are found relative to its folder.") from None
    except (ConnectionError, OSError) as e:
        if not unreachable(e):
            raise
        raise UserError(f"task {spec} could not download its data: the Hugging Face Hub is out of reach ({e})",
                        "Run it once where the Hub is reachable (its data is cached then), or write a local task "
                        "file: a YAML with dataset_path: json and data_files (docs/evaluation.md).") from None


def name_in(manager: Any, path: Path) -> str:
    """The name lm-eval's index gives the task or group a YAML file holds (a group loads by its name only)."""
    found = path.resolve()
    return next((name for name, entry in manager.task_index.items()
                 if entry.yaml_path is not None and Path(entry.yaml_path).resolve() == found), str(found))


def unreachable(error: BaseException) -> bool:
    """Whether `error` says the Hub (or the network) could not be reached, rather than something else of the disk."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    said = f"{type(error).__name__} {error}"
    return isinstance(error, (ConnectionError, LocalEntryNotFoundError, OfflineModeIsEnabled)) or any(
        words in said for words in ("on the Hub", "offline", "Couldn't reach", "HF_HUB_OFFLINE"))


def identity(spec: str, loaded: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """What a benchmark's result depends on besides the model: the task (for a task file, the task files and Python
    beside it, which it may include or name; its data's fingerprints), lm-eval's version and the limit."""
    path = Path(spec)
    data = {name: {split: getattr(part, "_fingerprint", "") for split, part in (task.dataset or {}).items()}
            for name, task in sorted(loaded["tasks"].items()) if getattr(task, "dataset", None) is not None}
    files = ""
    if path.suffix in (".yaml", ".yml"):
        digest = hashlib.sha256()
        for found in sorted(path.resolve().parent.iterdir()):
            if found.suffix in (".yaml", ".yml", ".py"):
                digest.update(found.name.encode() + b"\0" + found.read_bytes() + b"\0")
        files = digest.hexdigest()
    return {"task": spec, "files": files, "data": data, "lm_eval": version(), "limit": limit}


def tops(loaded: dict[str, Any]) -> list[Any]:
    """What a spec names: its groups at the top (MMLU's, not its 57 subjects), else its tasks (one, or a tag's)."""
    children = {child for kids in loaded["group_map"].values() for child in kids}
    return [group for name, group in loaded["groups"].items() if name not in children] or [*loaded["tasks"].values()]


def name_of(item: Any) -> str:
    return getattr(item, "task_name", None) or item.name


def label(loaded: dict[str, Any]) -> str:
    """The names lm-eval reports a spec under, as eval's bar and table show them."""
    return ", ".join(map(name_of, tops(loaded)))


def run(model: Any, tokenizer: Any, loaded: dict[str, Any], limit: int | None,
        grow: Callable[[int], None], advance: Callable[[int], None]) -> dict[str, Any]:
    """The task's metrics for `model` (as it is now: with its adapter on or off), {name: {metric: value}}, and the
    samples it ran on; `grow` and `advance` count its requests."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    class Counted(HFLM):
        """lm-eval's Hugging Face model, its requests sent in chunks that move our bar."""

        def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list:
            return self.chunked(super().loglikelihood, requests)

        def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list:
            return self.chunked(super().loglikelihood_rolling, requests)

        def generate_until(self, requests: list, disable_tqdm: bool = False) -> list:
            return self.chunked(super().generate_until, requests)

        def chunked(self, call: Callable[..., list], requests: list) -> list:
            grow(len(requests))
            results = []
            for start in range(0, len(requests), CHUNK_REQUESTS):
                chunk = requests[start:start + CHUNK_REQUESTS]
                results += call(chunk, disable_tqdm=True)
                advance(len(chunk))
            return results

    with quiet_bars():
        lm = Counted(pretrained=model, tokenizer=tokenizer, batch_size=BATCH_ROWS)
        out = lm_eval.simple_evaluate(lm, tasks=tops(loaded), task_manager=loaded["manager"], limit=limit,
                                      log_samples=False, bootstrap_iters=0, verbosity="ERROR")
    metrics = {name: {metric: value for metric, value in out["results"].get(name, {}).items()
                      if isinstance(value, int | float) and metric != "sample_len"}
               for name in map(name_of, tops(loaded))}
    samples = {name: found["effective"] for name, found in out.get("n-samples", {}).items()}
    return {"metrics": metrics, "samples": samples}
