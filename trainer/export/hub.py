"""Push an exported model to the Hugging Face Hub: the token, the repo, and an upload that survives bad networks."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from trainer.console import console
from trainer.errors import UserError

T = TypeVar("T")
# The Jupyter/Paperspace habit: a token file next to the notebooks (the folder the command runs in).
NOTEBOOK_TOKEN_FILES = (".hftoken", "token.txt")
# huggingface_hub already retries each request (LFS upload, batch, preupload) on network errors and 5xx; these waits
# are for a whole step (create the repo, commit a folder) failing after that.
RETRY_WAITS_S = (2, 8)
TOKEN_FIX = ("Create a token with write access at https://huggingface.co/settings/tokens, then set HF_TOKEN, "
             "pass --token-file FILE, or put it in .hftoken next to your notebooks.")
NOT_UPLOADED_AGAIN = ("Nothing local was removed. Run the same command again: files already on the Hub are not "
                      "uploaded again.")


def check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", repo_id) or ".." in repo_id \
            or len(repo_id.split("/")[1]) > 96:
        raise UserError(f"--push {repo_id!r} is not a Hub repository name",
                        "Use USER/NAME (letters, digits, '-', '_', '.'), e.g. --push alice/llama-3.2-1b-support.")


def find_token(token_file: str | None) -> str:
    """--token-file, else HF_TOKEN (or a `hf auth login`), else .hftoken / token.txt in the current folder."""
    from huggingface_hub import get_token

    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise UserError(f"--token-file {path} does not exist", TOKEN_FIX)
        return read_token(path)
    token = get_token()
    if token:
        return token
    for name in NOTEBOOK_TOKEN_FILES:
        if (Path.cwd() / name).is_file():
            return read_token(Path.cwd() / name)
    raise UserError("no Hugging Face token found (HF_TOKEN, --token-file, .hftoken or token.txt)", TOKEN_FIX)


def read_token(path: Path) -> str:
    token = path.read_text(encoding="utf-8").strip()
    if not token or any(c.isspace() for c in token):
        raise UserError(f"the token file {path} does not hold one token (it is empty or has several words)",
                        TOKEN_FIX)
    return token


def check_token(token: str) -> str:
    """The account name the token belongs to; a rejected token is a UserError that never shows the token."""
    from huggingface_hub import HfApi

    info = retrying("checking the token", lambda: HfApi(token=token).whoami(cache=False))
    return str(info.get("name", "?"))


def push(repo_id: str, folders: list[Path], token: str, private: bool) -> str:
    """Create the repo if needed and upload each folder to its root; returns the repo's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = retrying(f"creating {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
    for folder in folders:
        console.print(f"Uploading {folder} to {repo_id}")
        retrying(f"uploading {folder.name}/", lambda folder=folder: api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=f"Upload {folder.name} with trainer",
            # ref/: TRL's frozen copy of a DPO run's starting adapter (its reference), which no user of it loads
            ignore_patterns=["training_args.bin", ".*", "ref/*"]))
    return str(url)


def retrying(what: str, call: Callable[[], T]) -> T:
    """`call()`, again after RETRY_WAITS_S on network errors and server errors; 401/403 and other refusals are
    UserErrors at once."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    for attempt, wait in enumerate((*RETRY_WAITS_S, None), start=1):
        try:
            return call()
        except (HfHubHTTPError, httpx.TransportError) as e:
            status = e.response.status_code if isinstance(e, HfHubHTTPError) and e.response is not None else None
            if status in (401, 403):
                raise UserError(f"the Hugging Face Hub rejected the token while {what} (HTTP {status})",
                                TOKEN_FIX) from None
            if status is not None and status < 500 and status not in (408, 429):
                raise UserError(f"the Hub refused {what} (HTTP {status}): {first_line(e)}",
                                "Check the repository name and that the token may write to it.") from None
            if wait is None:
                raise UserError(f"{what} failed {attempt} times, the last with: {first_line(e)}",
                                NOT_UPLOADED_AGAIN) from None
            console.print(f"[yellow]{what} failed ({first_line(e)}); trying again in {wait} s[/]")
            time.sleep(wait)
    raise AssertionError("unreachable")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
