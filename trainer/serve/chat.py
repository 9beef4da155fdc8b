"""Chat with a result: a run's adapter on its base model, an adapter or checkpoint folder, or any model; streamed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from trainer import weights
from trainer.console import console
from trainer.data.render import stop_token_ids
from trainer.errors import UserError
from trainer.system import detect_gpu
from trainer.weights import describe  # noqa: F401  (serve/server.py names it chat.describe)


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.7  # 0: greedy
    top_p: float = 0.9
    max_new_tokens: int = 256
    system_prompt: str = ""


@dataclass
class ChatModel:
    name: str
    model: Any
    tokenizer: Any
    base_name: str  # the model the adapter was trained on (the model itself when there is no adapter)
    has_adapter: bool
    stop_ids: list[int] = field(default_factory=list)  # the end-of-turn token and EOS: a reply ends at either
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time per model


def load(target: str, cache_dir: str) -> ChatModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    base, adapter = weights.describe(target)
    source = weights.folder_of(base, cache_dir)
    gpu = detect_gpu()
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if gpu is not None:
        dtype = torch.bfloat16 if gpu.has_bf16 else torch.float16
        kwargs = {"dtype": dtype, "device_map": {"": 0}, "quantization_config": weights.four_bit(dtype)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter or source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise UserError(f"could not load '{base}': {e}",
                        "Check the path or Hub id (and your network) and try again.") from None
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    if not tokenizer.chat_template:
        raise UserError(f"{base} has no chat template, so it can't chat", "Use an Instruct model or a run of one.")
    return ChatModel(str(target), model, tokenizer, base, adapter is not None, stop_token_ids(tokenizer))


def prompt(chat: ChatModel, messages: list[dict[str, str]], settings: GenerationSettings) -> Any:
    """The model inputs for the next reply: the conversation (after the system prompt) in the chat template."""
    if settings.system_prompt:
        messages = [{"role": "system", "content": settings.system_prompt}, *messages]
    return chat.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                              return_dict=True).to(chat.model.device)


def stream(chat: ChatModel, messages: list[dict[str, str]], settings: GenerationSettings) -> Iterator[str]:
    """The reply to `messages`, yielded as it grows (each item is the whole reply so far)."""
    import torch
    from transformers import TextIteratorStreamer

    tokenizer = chat.tokenizer
    inputs = prompt(chat, messages, settings)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
    kwargs = {**inputs, "streamer": streamer, "max_new_tokens": settings.max_new_tokens,
              "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
              # The template's end-of-turn, whatever the generation config says: a Gemma whose config names only
              # <eos> would otherwise talk on past <end_of_turn> into a made-up next turn.
              **({"eos_token_id": chat.stop_ids} if chat.stop_ids else {}),
              **(sampling if settings.temperature > 0 else {"do_sample": False})}
    errors: list[BaseException] = []
    stopped = threading.Event()  # set when the reader stops early (a Stop button): generation ends at the next token
    kwargs["stopping_criteria"] = when_set(stopped)

    def generate() -> None:
        try:
            with torch.inference_mode():
                chat.model.generate(**kwargs)
        except BaseException as e:  # surfaced to the reader below, not lost in the thread
            errors.append(e)
            streamer.end()

    with chat.lock:
        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        try:
            text = ""
            for piece in streamer:
                text += piece
                yield text
        finally:  # also when the reader closes this generator: the model is free again before the lock is
            stopped.set()
            thread.join()
    if errors:
        raise errors[0]


def when_set(event: threading.Event) -> Any:
    """A stopping criterion for `generate` that ends every sequence once `event` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class WhenSet(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([WhenSet()])


def repl(chat: ChatModel, settings: GenerationSettings) -> None:
    """`trainer chat`: a terminal conversation; /reset starts over, /exit (or Ctrl+D) leaves."""
    console.print(f"Chatting with [bold]{chat.name}[/]" + (f" (adapter on {chat.base_name})" if chat.has_adapter
                                                            else "") + ". /reset starts over, /exit leaves.")
    history: list[dict[str, str]] = []
    while True:
        try:
            prompt = console.input("[bold cyan]you>[/] ").strip()
        except EOFError:
            break
        if prompt in ("/exit", "/quit"):
            break
        if prompt == "/reset":
            history = []
            continue
        if not prompt:
            continue
        history.append({"role": "user", "content": prompt})
        console.print("[bold green]model>[/] ", end="")
        shown = ""
        for reply in stream(chat, history, settings):
            console.print(reply[len(shown):], end="", markup=False, highlight=False)
            shown = reply
        console.print()
        history.append({"role": "assistant", "content": shown})
