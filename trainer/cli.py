"""Command line: `python -m trainer [train|profiles|data] ...`; parsing only, each command is one call."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from rich.markup import escape

from trainer import commands, profiles
from trainer import config as cfg
from trainer.bench.cards import CARDS
from trainer.config import Launch, settings
from trainer.console import console
from trainer.errors import Stopped, UserError
from trainer.runs import RunDir

COMMANDS = ("train", "profiles", "data", "chat", "eval", "ui", "serve", "bench", "export", "doctor", "runs")


def add_set(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """--set KEY=VALUE, repeatable, into args.settings; `--set help` lists the settings."""
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help=f"{help or 'override a setting'}; --set help lists them all")


def port(text: str) -> int:
    """--port: a TCP port, 0 (any free one) to 65535."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (0 to 65535)") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number: give 0 to 65535 (e.g. 8000)")
    return number


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m trainer",
        description="QLoRA fine-tuning of Llama 3.x, Qwen3, Gemma 3, Mistral and Phi on consumer NVIDIA cards, fitted"
        " to the card; an offline demo on the CPU.",
        epilog="`train` is the default command: `python -m trainer --profile rtx3070` trains.",
    )
    from trainer.export import GGUF_TYPES

    sub = top.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default="auto", help="hardware profile name, a .toml file, or auto (default)")
        p.add_argument("--model", help="Hub id or local folder of the base model")
        p.add_argument("--dataset", help="Hub id, local .jsonl/.json/.csv/.parquet file, or 'sample'")
        p.add_argument("--format", choices=settings.choices("data.format"), help=settings.help_of("data.format"))
        p.add_argument("--method", choices=settings.choices("train.method"),
                       help="sft (default): conversations; dpo or orpo: preference pairs (prompt, chosen, rejected); "
                       "kto: answers labelled true or false")
        add_set(p, "override any setting, e.g. --set learning_rate=1e-4 (repeatable)")

    train = sub.add_parser("train", help="fine-tune (the default command)", epilog=settings.listing(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    run_options(train)
    train.add_argument("--from", dest="from_run", metavar="RUN",
                       help="train the adapter of this finished run further (SFT, then --method dpo) on its base")
    train.add_argument("--max-steps", type=int, help="optimizer steps (0: use --epochs)")
    train.add_argument("--epochs", type=float, help="passes over the data (used when max steps is 0)")
    train.add_argument("--run-dir", help="where the run is written (default runs/<date-time>-<profile>)")
    train.add_argument("--dry-run", action="store_true",
                       help="say the settings, the memory and the time per epoch, then stop before loading the model")
    train.add_argument("--resume", action="store_true",
                       help="continue the newest valid checkpoint of --run-dir (or of the profile's latest run)")
    train.add_argument("--resume-from", metavar="CHECKPOINT", help="continue from this checkpoint-<step> folder")
    train.add_argument("--detach", action="store_true",
                       help="train in the background (survives closing the terminal); output in RUN_DIR/train.log")
    train.add_argument("--gpus", metavar="N|all", help="train on N GPUs of this machine (one process each, torchrun)")
    train.add_argument("--nnodes", type=int, default=1, metavar="K", help="machines training together (default 1)")
    train.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's number, 0 to K-1")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the machines meet: node rank 0's address")

    profiles = sub.add_parser("profiles", help="list profiles and the detected GPU, or show one resolved")
    profiles.add_argument("name", nargs="?", help="profile to show with every resolved field")
    add_set(profiles)

    data = sub.add_parser("data", help="show rendered examples with trained tokens highlighted, and length stats")
    run_options(data)
    data.add_argument("-n", type=int, default=3, help="how many examples to show (default 3)")

    evaluate = sub.add_parser("eval", help="a run's tuned model against its base on its held-out rows")
    evaluate.add_argument("target", help="run directory")
    evaluate.add_argument("-n", "--prompts", type=int, default=8, help="held-out prompts to answer (default 8)")
    evaluate.add_argument("--checks", metavar="FILE", help="a TOML file of checks on the answers (docs/evaluation.md)")
    evaluate.add_argument("--max-new-tokens", type=int, default=128)
    evaluate.add_argument("--against", default="base", metavar="base|RUN|CHECKPOINT",
                          help="what the run is compared with: its base model (default), another run of the same "
                               "base, or a checkpoint folder")
    evaluate.add_argument("--judge", metavar="FILE.gguf", help="a local judge model (llama.cpp) that compares the "
                          "answers in both orders")
    evaluate.add_argument("--judge-url", metavar="URL", help="an OpenAI-compatible endpoint (up to /v1) as the judge; "
                          "its key from $TRAINER_JUDGE_API_KEY")
    evaluate.add_argument("--judge-model", default="judge", help="the model name the endpoint is asked for")
    evaluate.add_argument("--tasks", metavar="TASK,...", type=lambda text: tuple(filter(None, text.split(","))),
                          default=(), help="benchmarks through lm-evaluation-harness (the lm-eval extra): task names "
                          "(mmlu,gsm8k) or YAML task files")
    evaluate.add_argument("--limit", type=int, metavar="N", help="at most N examples of each task (a quick look)")
    chat = sub.add_parser("chat", help="chat in the terminal with a run, an adapter folder or a model")
    chat.add_argument("target", help="run directory, adapter/checkpoint folder, model folder or Hub id")
    chat.add_argument("--temperature", type=float, default=0.7, help="0: greedy (default 0.7)")
    chat.add_argument("--top-p", type=float, default=0.9)
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--system", default="", help="system prompt")

    ui = sub.add_parser("ui", help="the Gradio app: chat, compare with the base model, follow runs")
    ui.add_argument("targets", nargs="*", help="runs or models to offer (default: the finished runs)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=port, default=7860)
    ui.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    ui.add_argument("--auth", help="USER:PASSWORD for basic auth (or set TRAINER_UI_AUTH)")
    ui.add_argument("--runs-root", default="runs", help="where runs are listed from (default runs)")
    serve = sub.add_parser("serve", help="an OpenAI-compatible HTTP API for a run, a model or a GGUF file")
    serve.add_argument("target", help="run directory, adapter/checkpoint folder, model folder, Hub id, or .gguf file")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=port, default=8000)
    serve.add_argument("--api-key", help="require `Authorization: Bearer KEY` on each request (or TRAINER_API_KEY)")
    bench = sub.add_parser("bench", help="measure training speed (tuned vs notebook vs transformers); --report")
    bench.add_argument("--profile", default="auto", help="hardware profile name, a .toml file, or auto (default)")
    bench.add_argument("--model", help="Hub id or local folder of the base model")
    bench.add_argument("--engines", help="built-in configurations: unsloth (tuned + notebook recipe), transformers "
                       "(plain PEFT at its best settings); default both")
    bench.add_argument("--config", dest="configs", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                       help="also measure the profile with these settings (repeatable)")
    bench.add_argument("--steps", type=int, default=30, help="optimizer steps per configuration (default 30)")
    bench.add_argument("--data", help="finetome-like (generated; the default), pairs-like (generated pairs; the "
                       "default for --method dpo, orpo and kto, which unpairs them), sample or a file")
    bench.add_argument("--method", choices=settings.choices("train.method"), default="sft",
                       help="what every configuration trains: sft (default), dpo, orpo or kto (against the recipe of "
                       "Unsloth's DPO and ORPO notebooks)")
    add_set(bench, "applied to every configuration, e.g. --set vram_cap_gb=8")
    bench.add_argument("--emulate", metavar="CARD", choices=tuple(CARDS),
                       help="run on a share of the GPU sized like this card (CUDA MPS), with its usable memory and "
                       "dtype; the profile defaults to the card's")
    bench.add_argument("--platform", choices=("linux", "windows"), default="linux",
                       help="with --emulate: the attention kernels PyTorch has on the card there (Windows builds lack "
                       "flash attention; default linux)")
    bench.add_argument("--gpus", type=int, metavar="N", help="also run each configuration on N GPUs, after one")
    bench.add_argument("--report", action="store_true", help="render the records as markdown (--output)")
    bench.add_argument("--output", default="benchmarks/RESULTS.md", help="where --report writes")

    doctor = sub.add_parser("doctor", help="check Python, torch/CUDA, the GPU, bitsandbytes, unsloth, disk, the Hub")
    doctor.add_argument("--timeout", type=float, default=180, metavar="SECONDS",
                        help="how long each import probe may take (default 180)")

    runs = sub.add_parser("runs", help="list runs (state, steps, last checkpoint, exports) or follow one")
    runs.add_argument("--follow", metavar="RUN", help="print a run's output until it ends (run folder or id)")
    runs.add_argument("--runs-root", default="runs", help="where runs are listed from (default runs)")

    export = sub.add_parser("export", help="merge the adapter (16-bit), write a model card, GGUF, push to the Hub")
    export.add_argument("run_dir", help="a finished run directory")
    export.add_argument("--merged-16bit", action="store_true", help="(re)build RUN_DIR/merged (the default action)")
    export.add_argument("--gguf", metavar="|".join(GGUF_TYPES), help="also write RUN_DIR/gguf/ with an Ollama "
                        "Modelfile")
    export.add_argument("--push", metavar="USER/NAME", help="upload to this Hugging Face Hub repository")
    export.add_argument("--private", action="store_true", help="create the Hub repository private")
    export.add_argument("--adapter-only", action="store_true", help="push the LoRA adapter instead of merged weights")
    export.add_argument("--no-check", action="store_true", help="skip checking the GGUF against the trained run "
                        "(its answers, template and stop token)")
    export.add_argument("--token-file", help="file holding the Hub token (default: HF_TOKEN, or .hftoken/token.txt)")
    for command in sub.choices.values():  # an argument a command does not take is said with its own usage
        command.set_defaults(command_parser=command)
    return top


def parse(argv: list[str]) -> argparse.Namespace:
    """argv parsed; an argument its command does not take ends with that command's usage (argparse says it under the
    top's, which names the commands alone), exit 2."""
    args, extra = parser().parse_known_args(argv)
    if extra:
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)} "
                                  f"({args.command_parser.prog} --help lists what it takes)")
    return args


def flags(args: argparse.Namespace) -> dict[str, object]:
    """Explicit options as config keys; they win over --set."""
    found = {key: getattr(args, name) for name, key in settings.FLAGS.items() if getattr(args, name, None) is not None}
    if "train.epochs" in found and "train.max_steps" not in found:
        found["train.max_steps"] = 0  # --epochs alone means: train for that many epochs
    return found


def launch_options(args: argparse.Namespace) -> Launch:
    return Launch(args.detach, args.resume, args.resume_from, args.gpus, args.nnodes, args.node_rank,
                  args.rdzv_endpoint)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "train")
    args = parse(argv)
    world = cfg.world()  # this process's place in a job, read once (torchrun's workers start here too)
    try:
        if args.command in ("chat", "eval", "ui"):
            from trainer.console import library_messages_to

            log = Path(cfg.cache_dir()) / "logs" / f"{args.command}.log"
            library_messages_to(log)
            console.print(f"[dim]Library warnings go to {log}[/]")
        return run(args, argv, world)
    except UserError as e:
        console.quiet = False  # the other processes of a job print nothing but errors, named by their rank
        console.print(f"[bold red]error{f' on rank {world.rank}' if world.rank else ''}:[/] {escape(e.message)}")
        if e.hint:
            console.print(f"[yellow]fix:[/] {escape(e.hint)}")
        if (error_file := cfg.error_file()) is not None:  # a front end running this command reads the error there
            commands.write_error(error_file, e)
        return 2
    except Stopped as e:
        return e.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


def run(args: argparse.Namespace, argv: list[str], world: cfg.World) -> int:
    """The command: settings resolved here, once, into a Config; each stage is one call with it."""
    if "help" in getattr(args, "settings", []):
        console.out(settings.listing(console.width), highlight=False)
        return 0
    if args.command == "doctor":
        from trainer.doctor import checks

        return checks.main(cfg.cache_dir(), args.timeout)
    if args.command == "runs":
        from trainer.runs import background, listing

        if args.follow:
            return background.follow(listing.find(args.follow, Path(args.runs_root)))
        listing.show(Path(args.runs_root))
    elif args.command == "profiles":
        if args.name:
            profiles.show_one(*profiles.resolve(args.name, args.settings))
        else:
            profiles.show_all({name: profiles.resolve(name, args.settings)[0] for name in profiles.names()})
    elif args.command == "chat":
        from trainer.serve import chat

        generation = chat.GenerationSettings(args.temperature, args.top_p, args.max_new_tokens, args.system)
        chat.repl(chat.load(args.target, cfg.cache_dir()), generation)
    elif args.command == "eval":
        from trainer.eval import compare, judge

        if args.judge and args.judge_url:
            raise UserError("--judge and --judge-url both name a judge", "Keep one.")
        if args.tasks:
            from trainer.eval import benchmarks

            benchmarks.version()  # the extra is there, before anything loads
        ask = (judge.local(Path(args.judge)) if args.judge
               else judge.endpoint(args.judge_url, args.judge_model, cfg.judge_api_key()) if args.judge_url else None)
        compare.main(args.target, cfg.cache_dir(), args.prompts, args.checks, args.max_new_tokens, args.against, ask,
                     judge.identity(args.judge, args.judge_url, args.judge_model), args.tasks, args.limit)
    elif args.command == "ui":
        from trainer.ui import app

        app.launch(args.targets, Path(args.runs_root), cfg.cache_dir(), args.host, args.port, args.share,
                  cfg.ui_auth(args.auth))
    elif args.command == "serve":
        from trainer.serve import server

        server.main(args.target, args.host, args.port, cfg.serve_api_key(args.api_key), cfg.cache_dir())
    elif args.command == "bench":
        from trainer.bench import report, sweep

        if args.report:
            console.print(f"Wrote {report.write_report(cfg.records_dir(), Path(args.output))}")
        else:
            configs = sweep.configurations(args.engines, args.configs, emulated=args.emulate is not None)
            plan = sweep.plan(args.profile, args.settings, args.model, configs, args.steps, args.data,
                              card=args.emulate, gpus=args.gpus, platform=args.platform, results=cfg.records_dir(),
                              method=args.method)
            # bad profiles and settings fail here, before any training
            base, reason = profiles.resolve(plan.profile, list(plan.settings), flags(args))
            for _, extra in plan.configs:
                profiles.resolve(plan.profile, plan.settings_of(extra), flags(args))
            sweep.run(plan, base, reason)
    elif args.command == "export":
        from trainer import export

        return export.main(args.run_dir, cfg.cache_dir(), args.merged_16bit, args.gguf, args.push, args.private,
                           args.adapter_only, args.token_file, check_gguf=not args.no_check)
    elif args.command == "data":
        from trainer.data import preview
        from trainer.train import methods

        config = profiles.resolve(args.profile, args.settings, flags(args))[0]
        with preview.facts_to(cfg.preview_file()):  # a front end running this command draws them
            methods.of(config).preview(config, args.n)
    else:
        return train(args, argv, world)
    return 0


def train(args: argparse.Namespace, argv: list[str], world: cfg.World) -> int:
    """`train`: in the background, as a job of several processes, resumed, or here; each resolved once."""
    from trainer.distributed import launch, ranks
    from trainer.train import recipe, resume

    how, given = launch_options(args), flags(args)
    if args.from_run:
        from trainer.train import from_run

        if how.resuming:
            raise UserError("--from starts a new run from another run's adapter; --resume continues a run (which "
                            "remembers where it started)", "Drop --from to resume, or --resume to start anew.")
        given = {**from_run.settings(args.from_run, set(given) | set(cfg.parse_set(args.settings))), **given}
    if args.dry_run:
        if how.resuming or how.detach:
            raise UserError("--dry-run plans a new run here", "Drop --resume, --resume-from and --detach.")
        recipe.dry_run(*profiles.resolve(args.profile, args.settings, given))
        return 0
    ranks.speak_only_on_main(world)  # one process of several (torchrun): rank 0 speaks for all
    if how.detach:
        from trainer.runs import background

        if how.resuming:
            run = run_to_resume(args, given)
            commands.one_training_at_a_time(run.path.parent, run.path)
            if resume.finished(run, how.resume_from):
                return 0
        else:
            config = profiles.resolve(args.profile, args.settings, given)[0]
            commands.one_training_at_a_time(*commands.where_it_trains(config))
            run = background.new_run(config)
        background.start(argv, run, args.profile, name_run_dir="run.run_dir" not in given and not how.resume_from)
    elif how.several_processes and not world.launched:
        launch.import_torch_quietly()  # before resolving, which may import torch (auto detects the GPU)
        config, _ = profiles.resolve(args.profile, args.settings, given)
        commands.one_training_at_a_time(*commands.where_it_trains(config))
        return launch.main(argv, how, config.run.rank_timeout_s)
    elif how.resuming:
        run = run_to_resume(args, given)
        with run.user_error_recorded(world.rank == 0):  # "failed: <the error>" in the run, not "died"
            if not world.launched:  # a job's processes: their launcher checked
                commands.one_training_at_a_time(run.path.parent, run.path)
            saved = run.read_config()
            asked, _ = profiles.resolve(str(run.config), args.settings, given)
            planned = resume.plan(run, saved, asked, how.resume_from, world)
            if planned is not None:
                config, checkpoint = planned
                recipe.main(config, ranks.start(world, config.run.rank_timeout_s), f"resuming {run.path}",
                            resume_from=checkpoint)
    else:
        config, reason = profiles.resolve(args.profile, args.settings, given)
        # a run folder made before it trains (--detach's), or once made: a UserError ends it as "failed: <the error>"
        recorded = (RunDir(Path(config.run.run_dir)).user_error_recorded(world.rank == 0, profile=config.profile)
                    if config.run.run_dir else contextlib.nullcontext())
        with recorded:
            if not world.launched:
                commands.one_training_at_a_time(*commands.where_it_trains(config))
            recipe.main(config, ranks.start(world, config.run.rank_timeout_s), reason)
    return 0


def run_to_resume(args: argparse.Namespace, given: dict[str, object]) -> RunDir:
    """The run --resume continues; the profile is resolved only when neither --resume-from nor --run-dir names it."""
    from trainer.train import resume

    run_dir = given.get("run.run_dir")
    if args.resume_from or run_dir:
        return resume.run_to_resume(args.resume_from, str(run_dir) if run_dir else None, None)
    return resume.run_to_resume(None, None, profiles.resolve(args.profile, args.settings)[0])
