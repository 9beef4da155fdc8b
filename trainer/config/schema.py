"""The typed run configuration: each setting's type (Literal choices), default, bounds and one line of help, here once.

The front ends ask this schema (trainer.config.settings) for a setting's choices, bounds and help: the CLI's
`choices=` and its settings listing, `--set` checks, `profiles NAME`, the UI's dropdowns and field help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DATE_STRING = "26 Jul 2024"  # Meta's Llama 3 template's own date when it has no clock

Engine = Literal["auto", "unsloth", "transformers"]
Method = Literal["sft", "dpo", "orpo", "kto"]
Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Bias = Literal["none", "all", "lora_only"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
Optimizer = Literal["adamw_8bit", "adamw_torch", "paged_adamw_8bit", "adafactor"]
Checkpointing = Literal["unsloth", "on", "off", "auto"]
OnOffAuto = Literal["auto", "on", "off"]
LossType = Literal["nll", "chunked_nll", "auto"]
DataFormat = Literal["auto", "sharegpt", "openai", "alpaca", "text"]
Tracker = Literal["tensorboard", "mlflow", "wandb"]  # what `report_to` may list
SdpaBackend = Literal["flash", "efficient", "cudnn", "math"]  # torch's scaled-dot-product attention kernels

TRACKERS: tuple[str, ...] = get_args(Tracker)
SDPA_BACKENDS: tuple[str, ...] = get_args(SdpaBackend)
FORMATS: tuple[str, ...] = get_args(DataFormat)
METHODS: tuple[str, ...] = get_args(Method)


def fraction_or_count(value: float) -> bool:
    """data.eval_size: a fraction below 1, or a whole row count."""
    return value >= 0 and (value < 1 or float(value).is_integer())


def field_pairs(value: tuple[str, ...]) -> bool:
    """data.columns: FIELD:NAME items, both sides named."""
    return all(item.count(":") == 1 and all(side.strip() for side in item.split(":")) for item in value)


def setting(default: Any, help: str, *, at_least: float | None = None, above: float | None = None,
            below: float | None = None, valid: Callable[[Any], bool] | None = None, hint: str = "") -> Any:
    """A field with its help line and bounds (`at_least`: >=, `above`/`below`: strict; `valid`: any other rule, whose
    failure says `hint`), read by trainer.config.settings."""
    return field(default=default, metadata={"help": help, "at_least": at_least, "above": above, "below": below,
                                            "valid": valid, "hint": hint})


@dataclass(frozen=True)
class HardwareConfig:
    """The card a profile was written for; `auto` matches a detected GPU against it."""

    gpu_names: tuple[str, ...] = setting((), 'substrings of the CUDA device name `auto` matches, e.g. "RTX 3070"')
    vram_gb: float = setting(0.0, "the card's memory in GB (0: the CPU profile)")
    compute_capability: str = setting("", '"7.5" (Turing: fp16 only), "8.6" (Ampere: bf16)')
    tflops: float = setting(0.0, "dense 16-bit tensor TFLOPS (fp32 accumulation): the time per epoch told before the "
                            "start; 0: not told", at_least=0)


@dataclass(frozen=True)
class ModelConfig:
    name: str = setting("unsloth/Llama-3.2-1B-Instruct-bnb-4bit", "the base model: a Hub id or a local folder")
    dtype: Dtype = setting("auto", "auto: bfloat16 where the GPU has it, else float16; float32 on the CPU")
    load_in_4bit: bool = setting(True, "load the base model in 4-bit (QLoRA; needs an NVIDIA GPU)")
    max_seq_length: int = setting(2048, "tokens per row; longer conversations are cut", at_least=1)
    # Its base model and LoRA shape are then the run's. DPO's reference is that adapter as it starts (the SFT model):
    # TRL's frozen copy of it, trainer/train/from_run.py.
    from_run: str = setting("", "a finished run whose adapter this run trains further (--from RUN); empty: a fresh "
                            "adapter")


@dataclass(frozen=True)
class LoraConfig:
    r: int = setting(16, "LoRA rank", at_least=1)
    alpha: int = setting(16, "LoRA scaling (alpha / r)", at_least=1)
    dropout: float = setting(0.0, "dropout on the LoRA layers", at_least=0)
    target_modules: tuple[str, ...] = setting(LLAMA_TARGETS, "the linear layers that get an adapter")
    bias: Bias = setting("none", "which biases train")
    use_rslora: bool = setting(False, "rank-stabilized LoRA (scaling alpha / sqrt(r))")
    use_loftq: bool = setting(False, "LoftQ initialization of the adapter")


@dataclass(frozen=True)
class TrainConfig:
    method: Method = setting("sft", "sft: conversations; dpo, orpo: preference pairs (prompt, chosen, rejected), "
                             "TRL's DPOTrainer and ORPOTrainer; kto: answers labelled good or bad, TRL's KTOTrainer")
    beta: float = setting(0.1, "dpo, kto: how far from the reference model; orpo: the odds ratio's weight (TRL's "
                          "beta)", above=0)
    desirable_weight: float = setting(1.0, "kto: the loss weight of answers labelled true (raise it when they are "
                                      "fewer than the false ones)", above=0)
    undesirable_weight: float = setting(1.0, "kto: the loss weight of answers labelled false", above=0)
    micro_batch_size: int = setting(2, "rows per forward pass", at_least=1)
    grad_accum_steps: int = setting(4, "micro-batches per optimizer step", at_least=1)
    learning_rate: float = setting(2e-4, "peak learning rate", above=0, below=1,
                                   hint="Typical LoRA values: 1e-4 to 5e-4.")
    lr_scheduler: Scheduler = setting("linear", "the learning rate's schedule after warmup")
    warmup_steps: int = setting(5, "optimizer steps of linear warmup (cut to a fifth of a run it would take over "
                                "half of)", at_least=0)
    weight_decay: float = setting(0.01, "AdamW's weight decay", at_least=0)
    optimizer: Optimizer = setting("adamw_8bit", "the optimizer (Hugging Face's name)")
    seed: int = setting(3407, "random seed: data order, LoRA init")
    max_steps: int = setting(60, "optimizer steps; 0: train for `epochs` instead", at_least=0)
    epochs: float = setting(1.0, "passes over the data, when max_steps is 0", above=0)
    gradient_checkpointing: Checkpointing = setting("unsloth", "recompute activations in the backward pass (less "
                                                    "memory); auto: per engine (engines.policy)")
    # eval rows x 1 pass against steps x rows x 3 passes: cheap at this interval
    eval_every_steps: int = setting(50, "evaluate every N steps; 0: only at the end", at_least=0)
    # reading them waits for the GPU, so not at every step
    log_every_s: float = setting(2.0, "metrics at most this often, in seconds; 0: every step", at_least=0)
    save_every_steps: int = setting(20, "save a checkpoint every N steps", at_least=1)
    keep_checkpoints: int = setting(2, "the newest N checkpoint-<step> folders are kept", at_least=1)
    packing: bool = setting(False, "TRL's best-fit packing of several conversations into each max_seq_length row")
    padding_free: OnOffAuto = setting("auto", "batches without padding; auto: the engine's default (Unsloth "
                                      "flattens each batch)")
    group_by_length: bool = setting(False, "batches of similar lengths: little padding, few distinct shapes")
    # few shapes: cached attention plans
    pad_to_multiple_of: int = setting(0, "round each batch's length up to a multiple of N; 0: no", at_least=0)
    cudnn_attention: bool = setting(True, "torch's cuDNN SDPA backend (it re-plans for every new shape: CPU cost)")
    # Activation memory is then bounded by this, not by the largest batch (what lets a card train without gradient
    # checkpointing).
    max_tokens_per_pass: int = setting(0, "split a micro-batch of more tokens into several forward/backward passes "
                                       "(halved after running out of memory); 0: off", at_least=0)
    loss_type: LossType = setting("nll", "chunked_nll: TRL's chunked LM head + loss (less memory, plain "
                                  "transformers); auto: engines.policy")
    # trainer/engines/trained_positions.py
    trained_positions_only: OnOffAuto = setting("off", "the LM head and loss only where the next token is trained "
                                                "(unsloth engine): the same loss, fewer FLOPs; auto: on with unsloth")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting("mlabonne/FineTome-100k", 'a Hub id, a local file, or "sample" (bundled, offline)')
    format: DataFormat = setting("auto", "the dataset's format; auto: detected from its columns")
    split: str = setting("train", "the dataset's split")
    eval_size: float = setting(0.02, "rows held out for eval loss: a fraction (< 1) or a row count (>= 1)",
                               valid=fraction_or_count, hint="Use a fraction below 1 (0.02) or a whole row count "
                               "(200).")
    eval_max_examples: int = setting(64, "at most this many eval rows: enough for the trend, cheap to check often",
                                     at_least=1)
    skip_invalid_rows: bool = setting(False, "skip rows that cannot be read or rendered instead of stopping")
    # LLaMA-Factory's `columns`, axolotl's field_instruction/field_output: a file's own field names, mapped once.
    columns: tuple[str, ...] = setting((), "read a file's fields under the names a format reads: FIELD:NAME pairs "
                                       "(question:instruction,answer:output)", valid=field_pairs,
                                       hint="Give FIELD:NAME pairs: --set columns=question:instruction,answer:output")
    # Meta's Llama 3 template writes "Today Date: <date>" into every prompt; a fixed date (the template's own fallback)
    # keeps a run, its resume and its cached tokens the same on any day. Templates without a date ignore it.
    date_string: str = setting(DATE_STRING, "the date Llama 3's template writes into prompts")
    control_tokens_as_text: bool = setting(False, "text that spells a control token (<|eot_id|>) is encoded as text")
    cache_tokens: bool = setting(True, "keep a full epoch's tokenized rows in <cache_dir>/tokenized/ for next time")


@dataclass(frozen=True)
class RunConfig:
    run_dir: str = setting("", "where the run is written; empty: <runs_root>/<date-time>-<profile>")
    runs_root: str = setting("runs", "where new runs go")
    cache_dir: str = setting("", "converted local models; empty: $TRAINER_CACHE_DIR or ~/.cache/trainer")
    vram_cap_gb: float = setting(0.0, "cap this process's GPU memory (emulate a smaller card); 0: no cap", at_least=0)
    resume_force: bool = setting(False, "let --resume continue with settings that change what is trained")
    report_to: tuple[Tracker, ...] = setting((), "experiment trackers, through the Hugging Face integrations")
    # `bench --emulate rtx2060s` runs on a big GPU with Turing's (efficient, math). A fact of the machine, like
    # vram_cap_gb, not of what is trained: train.cudnn_attention is the tuning choice.
    sdpa_backends: tuple[SdpaBackend, ...] = setting((), "the attention kernels torch may use here; empty: every one "
                                                     "it has")
    # the rendezvous of several machines, everyone's model loaded
    rank_timeout_s: float = setting(600.0, "several processes (--gpus, torchrun): how long they wait for each other "
                                    "at start-up", above=0)


@dataclass(frozen=True)
class Config:
    profile: str = "auto"  # chosen with --profile, not a setting
    description: str = setting("", "what this profile is for")
    engine: Engine = setting("auto", "auto: unsloth on a CUDA GPU where it imports, else transformers")
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Launch:
    """How `train` runs, besides what it trains (Config): in the background, resumed, on several GPUs or machines."""

    detach: bool = False
    resume: bool = False
    resume_from: str | None = None  # a checkpoint-<step> folder
    gpus: str | None = None  # N or "all"
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None

    @property
    def resuming(self) -> bool:
        return self.resume or self.resume_from is not None

    @property
    def several_processes(self) -> bool:
        return bool(self.gpus) or self.nnodes > 1
