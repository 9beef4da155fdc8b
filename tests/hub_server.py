"""A local stand-in for the Hugging Face Hub: the endpoints huggingface_hub's HfApi calls to create a repo and
upload a folder (whoami, repos/create, preupload, LFS batch + basic upload, commit as NDJSON, revision info), and those
`datasets.load_dataset` calls to read a public dataset repo (revision info, tree, paths-info, resolve).

The client is the real one, pointed here with HF_ENDPOINT and HF_HUB_DISABLE_XET=1 (the Xet transfer protocol is not
spoken here). Failures can be switched on to test retries and resuming.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".json")  # tokenizer.json is large: LFS too, as on the Hub


@dataclass
class Hub:
    token: str
    user: str = "alice"
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo id -> {"private", "files": {path: bytes}}
    datasets: dict[str, dict[str, bytes]] = field(default_factory=dict)  # public dataset repo id -> {path: bytes}
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content (stored even if no commit follows)
    uploads: list[str] = field(default_factory=list)  # sha256 of every LFS object received, in order
    requests: list[str] = field(default_factory=list)  # "METHOD path" of every request
    seen_headers: list[str] = field(default_factory=list)
    fail_commits: int = 0  # answer this many commit requests with 503
    fail_uploads: int = 0  # answer this many LFS uploads with 500 (huggingface_hub retries those itself)
    lock: threading.Lock = field(default_factory=threading.Lock)


def serve(hub: Hub) -> tuple[ThreadingHTTPServer, str]:
    """Start the server on a free port of 127.0.0.1; returns it and its URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def authorized(self) -> bool:
            hub.seen_headers.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                self.reply(401, {"error": "Invalid credentials in Authorization header"},
                           {"X-Error-Message": "Invalid credentials in Authorization header"})
                return False
            return True

        def do_HEAD(self) -> None:
            hub.requests.append(f"HEAD {self.path}")
            self.dataset(head=True) or self.reply(404, {"error": f"not implemented here: HEAD {self.path}"})

        def dataset(self, head: bool = False) -> bool:
            """Answer a read of a public dataset repo; False if the request is not one."""
            path = self.path.split("?")[0]
            parts = path.split("/")
            api = parts[1] == "api"
            if len(parts) < 4 + api or parts[1 + api] != "datasets":
                return False
            repo_id = f"{parts[2 + api]}/{parts[3 + api]}"
            files = hub.datasets.get(repo_id)
            if files is None:
                self.reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return True
            sha = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
            action = parts[4 + api] if len(parts) > 4 + api else "revision"  # /api/datasets/{id}: its info
            rest = "/".join(parts[6 + api:])
            if not api and action == "resolve":  # /datasets/{id}/resolve/{rev}/{file}
                if rest not in files:
                    self.reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                    return True
                data = files[rest]
                self.send_response(200)
                for k, v in {"Content-Length": str(len(data)), "ETag": f'"{git_blob_sha(data)}"',
                             "X-Repo-Commit": sha, "Content-Type": "application/octet-stream"}.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                return True
            entries = [{"type": "file", "path": p, "size": len(d), "oid": git_blob_sha(d)} for p, d in files.items()]
            if action == "revision":
                self.reply(200, {"id": repo_id, "sha": sha, "private": False, "disabled": False, "gated": False,
                                 "siblings": [{"rfilename": p} for p in files], "cardData": {}, "tags": []})
            elif action == "tree":  # /api/datasets/{id}/tree/{rev}[/{folder}], every file below (recursive or not)
                self.reply(200, [e for e in entries if not rest or e["path"].startswith(rest.rstrip("/") + "/")])
            elif action == "paths-info":
                asked = set(parse_qs(self.body().decode()).get("paths", []))
                self.reply(200, [e for e in entries if e["path"] in asked])
            else:
                return False
            return True

        def do_GET(self) -> None:
            hub.requests.append(f"GET {self.path}")
            if self.dataset():
                return
            if not self.authorized():
                return
            if self.path.startswith("/api/whoami-v2"):
                return self.reply(200, {"type": "user", "name": hub.user, "auth": {"type": "access_token"}})
            parts = self.path.split("?")[0].split("/")  # /api/models/{user}/{name}/revision/{rev}
            if len(parts) >= 6 and parts[2] == "models" and parts[5] == "revision":
                repo = hub.repos.get(f"{parts[3]}/{parts[4]}")
                if repo is None:
                    return self.reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return self.reply(200, {"id": f"{parts[3]}/{parts[4]}", "sha": repo["sha"], "private": repo["private"],
                                        "siblings": [{"rfilename": p} for p in repo["files"]]})
            self.reply(404, {"error": f"not implemented here: GET {self.path}"})

        def do_POST(self) -> None:
            hub.requests.append(f"POST {self.path}")
            if self.dataset():
                return
            if not self.authorized():
                return
            data = self.body()
            path = self.path.split("?")[0]
            if path == "/api/validate-yaml":  # the client checks README.md's front matter before uploading it
                return self.reply(*validate_card(json.loads(data)["content"]))
            if path == "/api/repos/create":
                request = json.loads(data)
                repo_id = f"{request.get('organization') or hub.user}/{request['name']}"
                with hub.lock:
                    if repo_id in hub.repos:
                        return self.reply(409, {"error": "You already created this model repo", "url": repo_id})
                    private = request.get("visibility") == "private" or request.get("private") is True
                    hub.repos[repo_id] = {"private": private, "files": {}, "sha": "0" * 40}
                return self.reply(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
            if path.endswith(".git/info/lfs/objects/batch"):
                objects = []
                for obj in json.loads(data)["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"]}
                    if obj["oid"] not in hub.lfs:  # already stored: no actions, the client skips the upload
                        entry["actions"] = {"upload": {"href": f"http://{self.headers['Host']}/lfs/{obj['oid']}"}}
                    objects.append(entry)
                return self.reply(200, {"transfer": "basic", "objects": objects})
            parts = path.split("/")  # /api/models/{user}/{name}/{preupload|commit}/{rev}
            if len(parts) < 7 or parts[2] != "models":
                return self.reply(404, {"error": f"not implemented here: POST {path}"})
            repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self.reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            if action == "preupload":
                files = []
                for f in json.loads(data)["files"]:
                    lfs = f["path"].endswith(LFS_SUFFIXES)
                    existing = repo["files"].get(f["path"])
                    oid = None
                    if existing is not None:
                        oid = hashlib.sha256(existing).hexdigest() if lfs else git_blob_sha(existing)
                    files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                                  "shouldIgnore": False, "oid": oid})
                return self.reply(200, {"files": files})
            if action == "commit":
                with hub.lock:
                    if hub.fail_commits > 0:
                        hub.fail_commits -= 1
                        return self.reply(503, {"error": "Service temporarily unavailable"})
                return self.commit(repo_id, repo, data)
            self.reply(404, {"error": f"not implemented here: POST {path}"})

        def commit(self, repo_id: str, repo: dict[str, Any], data: bytes) -> None:
            added: dict[str, bytes] = {}
            for line in data.splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "file":
                    added[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    if value["oid"] not in hub.lfs:
                        return self.reply(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                    added[value["path"]] = hub.lfs[value["oid"]]
            with hub.lock:
                repo["files"].update(added)
                repo["sha"] = hashlib.sha1(repr(sorted(repo["files"])).encode() + data).hexdigest()
            self.reply(200, {"success": True, "commitOid": repo["sha"],
                             "commitUrl": f"http://{self.headers['Host']}/{repo_id}/commit/{repo['sha']}"})

        def do_PUT(self) -> None:  # LFS basic transfer: the object's bytes
            hub.requests.append(f"PUT {self.path}")
            data = self.body()
            oid = self.path.rsplit("/", 1)[-1]
            with hub.lock:
                if hub.fail_uploads > 0:
                    hub.fail_uploads -= 1
                    return self.reply(500, {"error": "storage hiccup"})
            if hashlib.sha256(data).hexdigest() != oid:
                return self.reply(400, {"error": "content does not match its sha256"})
            with hub.lock:
                hub.lfs[oid] = data
                hub.uploads.append(oid)
            self.reply(200)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def validate_card(content: str) -> tuple[int, dict[str, Any]]:
    """The front matter must be a YAML mapping with the fields the Hub checks typed as the Hub expects."""
    import yaml

    errors = []
    if not content.startswith("---\n") or "\n---\n" not in content[3:]:
        errors.append("README.md has no YAML front matter")
    else:
        meta = yaml.safe_load(content[4:content.index("\n---\n", 3)])
        if not isinstance(meta, dict):
            errors.append("front matter is not a mapping")
        else:
            for key, kind in {"license": str, "library_name": str, "pipeline_tag": str, "tags": list,
                              "datasets": list, "base_model": (str, list)}.items():
                if key in meta and not isinstance(meta[key], kind):
                    errors.append(f"\"{key}\" must be a {kind}")
    return (400 if errors else 200), {"errors": [{"message": e} for e in errors], "warnings": []}


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
