"""`trainer serve` for a model transformers runs: `transformers serve`'s OpenAI app (FastAPI) around the one model
that chat.load gives (a run's adapter on its base, a merged export, a model folder or a Hub id)."""

from __future__ import annotations

import time
from typing import Any

from transformers.cli.serving.chat_completion import ChatCompletionHandler
from transformers.cli.serving.completion import CompletionHandler
from transformers.cli.serving.model_manager import ModelManager, TimedModel
from transformers.cli.serving.response import ResponseHandler
from transformers.cli.serving.server import build_server
from transformers.cli.serving.transcription import TranscriptionHandler
from transformers.cli.serving.utils import BaseHandler, GenerationState, Modality

from trainer.serve.chat import ChatModel


class OneModel(ModelManager):
    """transformers serve's model manager, pinned to a model that is already loaded (its own loader knows neither
    PEFT adapters nor our runs): requests name it by `model_id`, and /v1/models lists it (not the Hub cache)."""

    def __init__(self, model_id: str, chat: ChatModel) -> None:
        super().__init__(model_timeout=-1)
        self.loaded_models[model_id] = TimedModel(chat.model, timeout_seconds=-1, processor=chat.tokenizer)
        self.force_model = model_id
        self.created = int(time.time())

    def process_model_name(self, model_id: str) -> str:
        return model_id  # no "@main" revision: the name is ours, not a Hub repository's

    def get_gen_models(self, cache_dir: str | None = None) -> list[dict[str, Any]]:
        return [{"id": self.force_model, "object": "model", "created": self.created, "owned_by": "trainer"}]


def build(chat: ChatModel, model_id: str) -> Any:
    """The FastAPI app. Requests are answered one at a time, in order (transformers serve's one inference thread per
    model); a request's temperature above 0 samples, as OpenAI's do."""
    chat.model.generation_config.do_sample = True  # transformers serve sets do_sample=False for temperature 0 only
    manager = OneModel(model_id, chat)
    state = GenerationState()
    return build_server(manager, ChatCompletionHandler(manager, state), CompletionHandler(manager, state),
                        ResponseHandler(manager, state), TranscriptionHandler(manager, state), state)


def context_tokens(chat: ChatModel) -> int:
    return int(chat.model.config.max_position_embeddings)


def prompt_counter(chat: ChatModel) -> Any:
    """Counts a request's prompt tokens as the server renders it: its messages, as transformers serve converts them,
    in the model's chat template with the generation prompt."""

    from jinja2 import TemplateError

    def count(messages: list[dict[str, Any]]) -> int:
        inputs = BaseHandler.get_processor_inputs_from_messages(messages, Modality.LLM)
        try:
            rendered = chat.tokenizer.apply_chat_template(inputs, add_generation_prompt=True, tokenize=True,
                                                          return_dict=True)
        except TemplateError as e:  # templates raise on conversations they do not accept
            raise ValueError(str(e)) from None
        return len(rendered["input_ids"])

    return count
