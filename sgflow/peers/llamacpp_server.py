"""llama.cpp's own ``llama-server`` as a live peer engine, built from source once per machine.

The sources come from the llama-cpp-python sdist (``vendor/llama.cpp``), the same release
sgflow's embedded engine links (``LLAMA_VERSION``, the Makefile's too), so both engines run
the same llama.cpp. Only the ``llama-server`` target is built, with the Makefile's portable
AVX2 flags (a native build enables AMX, which crashes on these Xeons), static libraries (the
binary is self-contained), no Web UI and no HTTPS: PyPI serves the sdist, and the build
itself fetches nothing.

Cache layout (``cache_root()`` is ``$SGFLOW_PEERS_CACHE``, default ``~/.cache/sgflow/peers``)::

    llama-server-0.3.36-avx2/llama-server    the binary (present = installed)
    .build-llama-server-*/                   a build in progress (moved into place at the end)
    .llama-server.lock                       held while one build runs (others wait for it)
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from sgflow.peers.cache import cache_root, free_port, log_tail, wait_healthy

__all__ = [
    "CMAKE_ARGS",
    "LLAMA_VERSION",
    "BuildFailed",
    "LlamaServer",
    "binary",
    "install",
    "install_dir",
]

LLAMA_VERSION = "0.3.36"
"""The llama-cpp-python release whose vendored llama.cpp is built (= Makefile's LLAMA_VERSION)."""

CMAKE_ARGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    # Portable CPU build, the same as the Makefile's LLAMA_CMAKE_ARGS.
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_AVX512=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    # The server lives under tools/; nothing else is configured.
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    # Offline: no npm build and no download of the prebuilt Web UI (tools/ui/CMakeLists.txt).
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
)

_JOBS = 2


class BuildFailed(RuntimeError):
    """Downloading, configuring or building ``llama-server`` failed; the message has the log tail."""


def install_dir() -> Path:
    """``cache_root()/llama-server-<LLAMA_VERSION>-avx2``."""
    return cache_root() / f"llama-server-{LLAMA_VERSION}-avx2"


def binary() -> Path | None:
    """The installed ``llama-server`` binary, or ``None`` if :func:`install` has not run here."""
    path = install_dir() / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def install(log: Callable[[str], None] = print) -> Path:
    """Build ``llama-server`` into the cache unless it is there; return the binary's path.

    Idempotent: returns at once when the binary exists. The build runs in a temporary
    directory beside the install directory and is moved into place only when it succeeded,
    so an interrupted build never looks installed. Takes 10-20 minutes on two cores.
    Raises :class:`BuildFailed` with the tail of the step's log.
    """
    found = binary()
    if found is not None:
        log(f"llama-server {LLAMA_VERSION}: installed at {found}")
        return found
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    # One build per machine at a time: a second `make peers` waits, then finds the binary.
    with (root / ".llama-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = binary()
        if found is not None:
            log(f"llama-server {LLAMA_VERSION}: installed at {found}")
            return found
        return _build(root, log)


def _build(root: Path, log: Callable[[str], None]) -> Path:
    for stale in root.glob(".build-llama-server-*"):  # left by a killed build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".build-llama-server-", dir=root))
    started = time.monotonic()
    try:
        src = _fetch_sources(work, log)
        build = work / "build"
        log(f"llama-server {LLAMA_VERSION}: configuring (cmake)")
        _run(["cmake", "-S", str(src), "-B", str(build), *CMAKE_ARGS], work / "configure.log")
        log(
            f"llama-server {LLAMA_VERSION}: building with -j{_JOBS} (10-20 minutes, once per machine)"
        )
        _run(
            ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(_JOBS)],
            work / "build.log",
            progress=log,
        )
        built = build / "bin" / "llama-server"
        if not built.is_file():
            raise BuildFailed(f"the build finished but {built} is missing")
        stage = work / install_dir().name
        stage.mkdir()
        shutil.copy2(built, stage / "llama-server")
        shutil.rmtree(install_dir(), ignore_errors=True)  # a stale dir without the binary
        os.rename(stage, install_dir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = install_dir() / "llama-server"
    log(f"llama-server {LLAMA_VERSION}: installed at {path} in {time.monotonic() - started:.0f}s")
    return path


def _fetch_sources(work: Path, log: Callable[[str], None]) -> Path:
    log(f"llama-server {LLAMA_VERSION}: downloading the llama-cpp-python {LLAMA_VERSION} sdist")
    dl = work / "sdist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={LLAMA_VERSION}",
            "-d",
            str(dl),
        ],
        work / "download.log",
    )
    archives = sorted(dl.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        raise BuildFailed(f"pip download left no sdist in {dl}")
    log(f"llama-server {LLAMA_VERSION}: unpacking {archives[0].name}")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(work / "src", filter="data")
    (top,) = (work / "src").iterdir()
    src = top / "vendor" / "llama.cpp"
    if not (src / "tools" / "server" / "CMakeLists.txt").is_file():
        raise BuildFailed(f"{archives[0].name} has no vendor/llama.cpp/tools/server")
    return src


_PERCENT = re.compile(r"^\[\s*(\d+)%\]")


def _run(
    cmd: Sequence[str], log_path: Path, *, progress: Callable[[str], None] | None = None
) -> None:
    """Run ``cmd`` with its output in ``log_path``; report build progress every 10%."""
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        shown = -10
        while proc.poll() is None:
            time.sleep(2)
            if progress is None:
                continue
            pct = _last_percent(log_path)
            if pct is not None and pct >= shown + 10:
                shown = pct
                progress(f"llama-server {LLAMA_VERSION}: build {pct}%")
    if proc.returncode != 0:
        raise BuildFailed(
            f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n" + log_tail(log_path)
        )


def _last_percent(log_path: Path) -> int | None:
    for line in reversed(log_tail(log_path, 4000).splitlines()):
        m = _PERCENT.match(line)
        if m:
            return int(m.group(1))
    return None


class LlamaServer:
    """A running ``llama-server`` on ``127.0.0.1``; ``url`` is its base URL.

    ``model_path`` defaults to sgflow's bundled SmolLM2 GGUF (``default_model_path()``);
    ``port`` to a free one. ``ctx`` is the whole KV context (``-c``), shared by ``slots``
    parallel sequences (``-np``); ``threads`` is ``-t``. Prompt caching is on (it is the
    server's default; ``--cache-prompt`` says so explicitly), so ``/completion`` reports
    ``timings.cache_n``. ``extra_args`` are appended to the command line. The server's
    ``LLAMA_ARG_*`` environment variables are dropped so only the arguments decide.

    ``start()`` waits until ``GET /health`` answers 200 (503 while the model loads) and raises
    :class:`~sgflow.peers.cache.PeerStartFailed` with the log tail otherwise; it raises
    ``FileNotFoundError`` when the binary is not installed (``sgflow peers install llamacpp``).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        port: int | None = None,
        *,
        ctx: int = 4096,
        slots: int = 2,
        threads: int = 2,
        extra_args: Sequence[str] = (),
        startup_s: float = 120.0,
    ) -> None:
        if model_path is None:
            # Imported here: the engine package loads llama_cpp, which `install` never needs.
            from sgflow.engine.model import default_model_path

            model_path = default_model_path()
        self.model_path = str(model_path)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ctx, self.slots, self.threads = ctx, slots, threads
        self.extra_args = tuple(extra_args)
        self.startup_s = startup_s
        self.log_path = Path(tempfile.gettempdir()) / f"sgflow-llama-server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, exe: Path) -> list[str]:
        return [
            str(exe),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-m",
            self.model_path,
            "-c",
            str(self.ctx),
            "-np",
            str(self.slots),
            "-t",
            str(self.threads),
            "--cache-prompt",
            "--no-ui",
            *self.extra_args,
        ]

    def start(self) -> LlamaServer:
        exe = binary()
        if exe is None:
            raise FileNotFoundError(
                f"llama-server is not installed under {install_dir()}: "
                "run `sgflow peers install llamacpp` (or `make peers`)"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(exe), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        try:
            wait_healthy(self.url, "/health", self.startup_s, self.proc, log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 15 s); safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait(self) -> int:
        """Block until the server exits; its exit status (``0`` if it was never started)."""
        return self.proc.wait() if self.proc is not None else 0

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.log_path, chars)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
