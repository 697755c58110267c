"""deploy/Dockerfile without Docker: its steps in a Debian root filesystem, then checks.

    python deploy/container_check.py [--cache DIR] [--mirror URL] [--keep]

Needs root, debootstrap, unshare/nsenter (util-linux), ip (iproute2), the Python the
Dockerfile names (python3.11 for python:3.11-slim-bookworm) with a C compiler on the host,
and the ``dockerfile`` package (Docker's own Dockerfile parser; in ``palfrey[test]``).

1. Base image: ``FROM python:X.Y-slim-RELEASE`` becomes a minimal Debian RELEASE made by
   ``debootstrap --variant=minbase --include=python3-venv`` (Debian's python3 must be X.Y;
   no compiler in it: checked). It is made once and cached in --cache (default
   $PALFREY_ROOTFS_CACHE or /var/cache/palfrey-rootfs, outside the repository), then copied
   for each run.
2. Builder stage, on the host (it has the compiler): the build context filtered by
   deploy/Dockerfile.dockerignore, then ``pythonX.Y -m pip wheel --wheel-dir W .EXTRAS``.
3. Runtime stage, as Docker's parser reads it: ARG, ENV, RUN (``chroot ROOT /bin/sh -c``, with a
   ``--mount=type=bind,from=builder`` present for that step only), WORKDIR, USER, EXPOSE,
   HEALTHCHECK, ENTRYPOINT (exec form required), CMD; anything else is refused.
4. The container, twice (as is, and with ``--workers 2`` appended): ``unshare --pid --net
   --fork --mount-proc`` + ``chroot --userspec``, so Palfrey is PID 1 of a new PID
   namespace with its own loopback. Checked: PID 1 is Palfrey, running as the image's
   user; the demo answers HTTP and a WebSocket echo (scripts/wheel_smoke.py's checks, run
   in the namespace with nsenter); the HEALTHCHECK command exits 0 inside the container;
   with workers, a worker killed with SIGKILL is reaped (no zombie) and replaced; SIGTERM
   from outside (what ``docker stop`` sends) ends it with exit status 0 and every process
   logged its graceful finish.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import dockerfile  # Docker's Dockerfile parser (PyPI: dockerfile; in palfrey[test])

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCKERFILE = HERE / "Dockerfile"
DOCKERIGNORE = HERE / "Dockerfile.dockerignore"
DEFAULT_CACHE = Path(os.environ.get("PALFREY_ROOTFS_CACHE", "/var/cache/palfrey-rootfs"))
# The environment the python:*-slim images start from.
IMAGE_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
WORKER_TIMEOUT = 30.0

sys.path.insert(0, str(REPO / "scripts"))
from build_wheels import COMPILERS


class CheckFailed(Exception):
    pass


def expect(condition: object, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def step(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {message}", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, text=True, capture_output=True, **kwargs)
    if proc.returncode != 0:
        raise CheckFailed(f"{shlex.join(argv)} -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


# --------------------------------------------------------------------------------------------
# The Dockerfile
# --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[dockerfile.Command] = field(default_factory=list)


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages), read by Docker's own parser (BuildKit's, in Go)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        keyword = command.cmd.upper()
        if keyword == "FROM":
            words = command.value
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(substitute(words[0], global_args), name))
        elif not stages:
            expect(keyword == "ARG", f"line {command.start_line}: {keyword} before FROM")
            global_args.update([arg_default(command.value[0])])
        else:
            stages[-1].instructions.append(command)
    return global_args, stages


def arg_default(text: str) -> tuple[str, str]:
    name, _, default = text.partition("=")
    return name, shlex.split(default)[0] if default else ""


def substitute(text: str, variables: dict[str, str]) -> str:
    """Dockerfile variable substitution ($NAME and ${NAME}), as ENV, FROM, USER... do."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))",
                  lambda m: variables.get(m.group(1) or m.group(2), ""), text)


def exec_form(command: dockerfile.Command, words: tuple[str, ...], what: str) -> list[str]:
    """The JSON (exec) form; the shell form would make /bin/sh PID 1, which does not pass
    SIGTERM on."""
    expect(command.json and words, f"{what} must be in exec form (a JSON list)")
    return list(words)


# --------------------------------------------------------------------------------------------
# 1. The root filesystem
# --------------------------------------------------------------------------------------------


def base_image(stage: Stage) -> tuple[str, str]:
    m = re.fullmatch(r"python:(3\.\d+)-slim-(\w+)", stage.base)
    expect(m, f"runtime base {stage.base!r} is not python:X.Y-slim-RELEASE")
    return m.group(1), m.group(2)


def cached_rootfs(cache: Path, release: str, python: str, mirror: str | None,
                  started: float) -> Path:
    """A minimal Debian ``release`` with python3 and python3-venv, made once."""
    rootfs = cache / f"debian-{release}-minbase-python3"
    if not (rootfs / "usr/bin/python3").exists():
        debootstrap = shutil.which("debootstrap")
        expect(debootstrap, "debootstrap is missing (apt-get install debootstrap)")
        partial = cache / f"{rootfs.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        step(f"debootstrap {release} into {rootfs} (once; cached)", started)
        argv = [debootstrap, "--variant=minbase", "--include=python3-venv", release,
                str(partial)]
        run(argv + ([mirror] if mirror else []))
        partial.rename(rootfs)
        step("debootstrap done", started)
    found = run(["chroot", str(rootfs), "python3", "-c",
                 "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    expect(found == python, f"{rootfs}: Debian's python3 is {found}, the image's {python}")
    compilers = [c for c in COMPILERS
                 for d in ("usr/bin", "usr/local/bin", "bin") if (rootfs / d / c).exists()]
    expect(not compilers, f"{rootfs} has a compiler: {compilers}")
    return rootfs


# --------------------------------------------------------------------------------------------
# 2. The builder stage (on the host)
# --------------------------------------------------------------------------------------------


def ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if any(fnmatch(c, body) for c in candidates):
            verdict = not negated
    return verdict


def build_context(destination: Path) -> int:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                cwd=REPO).stdout.split()
    count = 0
    for relative in files:
        source = REPO / relative
        if source.is_file() and not ignored(relative, patterns):
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            count += 1
    return count


def builder_stage(stage: Stage, args: dict[str, str], python: str, work: Path,
                  started: float) -> Path:
    runs = [i.value[0] for i in stage.instructions if i.cmd.upper() == "RUN"]
    expect(any("pip wheel" in r and "--wheel-dir /wheels" in r for r in runs),
           "the builder stage no longer makes /wheels with pip wheel")
    interpreter = shutil.which(f"python{python}")
    expect(interpreter, f"python{python} is not on PATH (the builder stage's Python)")
    context = work / "context"
    count = build_context(context)
    wheels = work / "wheels"
    step(f"builder: {count} files in the build context; pip wheel with python{python}", started)
    run([interpreter, "-m", "pip", "wheel", "--no-cache-dir", "--wheel-dir", str(wheels),
         f".{args.get('EXTRAS', '')}"], cwd=context)
    names = sorted(p.name for p in wheels.glob("*.whl"))
    expect(any(n.startswith("palfrey-") for n in names), f"no palfrey wheel in {names}")
    step(f"builder: {len(names)} wheels ({', '.join(n for n in names if 'palfrey' in n)})",
         started)
    return wheels


# --------------------------------------------------------------------------------------------
# 3. The runtime stage (in the root filesystem)
# --------------------------------------------------------------------------------------------


@dataclass
class Image:
    root: Path
    env: dict[str, str]
    user: str = "root"
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def ids(self) -> tuple[int, int, str]:
        """(uid, gid, home) of USER, from the image's /etc/passwd."""
        for line in (self.root / "etc/passwd").read_text().splitlines():
            name, _, uid, gid, _, home, _ = line.split(":")
            if self.user in (name, uid):
                return int(uid), int(gid), home
        raise CheckFailed(f"USER {self.user} is not in the image's /etc/passwd")

    def container_env(self) -> dict[str, str]:
        _, _, home = self.ids()
        return {**self.env, "HOME": home, "HOSTNAME": "palfrey-check"}


def runtime_stage(stage: Stage, global_args: dict[str, str], root: Path, wheels: Path,
                  started: float) -> Image:
    image = Image(root=root, env=dict(IMAGE_BASE_ENV))
    args: dict[str, str] = {}
    for ins in stage.instructions:
        keyword = ins.cmd.upper()
        where = f"Dockerfile line {ins.start_line}: {keyword}"
        variables = {**args, **image.env}
        if keyword == "ARG":
            name, default = arg_default(ins.value[0])
            args[name] = default if "=" in ins.value[0] else global_args.get(name, "")
        elif keyword == "ENV":
            pairs = iter(ins.value)
            for name, value in zip(pairs, pairs):
                image.env[name] = substitute(" ".join(shlex.split(value)), variables)
        elif keyword == "RUN":
            runtime_run(image, ins.value[0], ins.flags, args, wheels, where)
            step(f"{where} ok", started)
        elif keyword == "WORKDIR":
            image.workdir = substitute(ins.value[0], variables)
            (root / image.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif keyword == "USER":
            image.user = substitute(ins.value[0], variables)
            image.ids()
        elif keyword == "EXPOSE":
            image.ports = [int(p.split("/")[0]) for p in ins.value]
        elif keyword == "HEALTHCHECK":
            expect(ins.value[0] == "CMD", f"{where}: HEALTHCHECK CMD expected")
            image.healthcheck = exec_form(ins, ins.value[1:], where)
        elif keyword == "ENTRYPOINT":
            image.entrypoint = exec_form(ins, ins.value, where)
        elif keyword == "CMD":
            image.cmd = exec_form(ins, ins.value, where)
        else:
            raise CheckFailed(f"{where} is not supported by this check: add it here")
    expect(image.entrypoint, "the runtime stage has no ENTRYPOINT")
    expect(image.user not in ("root", "0"), "the runtime stage runs as root")
    expect(image.healthcheck, "the runtime stage has no HEALTHCHECK")
    return image


def runtime_run(image: Image, script: str, flags: tuple[str, ...], build_args: dict[str, str],
                wheels: Path, where: str) -> None:
    mounts: list[Path] = []
    for spec in flags:
        expect(spec.startswith("--mount="), f"{where}: unsupported {spec}")
        options = dict(o.split("=", 1) for o in spec[len("--mount="):].split(","))
        expect(options.get("type") == "bind" and options.get("from") == "builder"
               and options.get("source") == "/wheels", f"{where}: unsupported {spec}")
        target = image.root / options["target"].lstrip("/")
        shutil.copytree(wheels, target)
        mounts.append(target)
    uid, gid, _ = image.ids()
    try:
        run(["chroot", f"--userspec={uid}:{gid}", str(image.root), "/usr/bin/env",
             f"--chdir={image.workdir}", "/bin/sh", "-c", script],
            env={**image.container_env(), **build_args})
    finally:
        for target in mounts:
            shutil.rmtree(target)


# --------------------------------------------------------------------------------------------
# 4. The container: Palfrey as PID 1 of its own PID and network namespaces
# --------------------------------------------------------------------------------------------


def ns_processes(pid: int) -> dict[int, tuple[int, str, str]]:
    """Host pid -> (namespace pid, state, cmdline) of every process in ``pid``'s PID
    namespace."""
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") != ns:
                continue
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        nspid = int(re.search(r"^NSpid:.*\s(\d+)$", status, re.MULTILINE).group(1))
        state = re.search(r"^State:\s+(\S)", status, re.MULTILINE).group(1)
        found[int(entry.name)] = (nspid, state, cmdline)
    return found


def wait_until(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Container:
    def __init__(self, image: Image, extra: list[str]) -> None:
        self.image = image
        uid, gid, _ = image.ids()
        argv = [*image.entrypoint, *image.cmd, *extra]
        inner = (f"{shutil.which('ip')} link set lo up && exec {shutil.which('chroot')} "
                 f"--userspec={uid}:{gid} {shlex.quote(str(image.root))} /usr/bin/env "
                 f"--chdir={shlex.quote(image.workdir)} -- {shlex.join(argv)}")
        self.proc = subprocess.Popen(
            [shutil.which("unshare"), "--pid", "--net", "--fork", "--kill-child",
             f"--mount-proc={image.root / 'proc'}", "/bin/sh", "-c", inner],
            env=image.container_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()
        self.pid = 0  # Palfrey, PID 1 inside: its pid out here

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def log(self) -> str:
        return "\n".join(self.lines)

    def logged(self, pattern: str) -> re.Match[str] | None:
        return next((m for line in list(self.lines) if (m := re.search(pattern, line))), None)

    def wait_running(self) -> int:
        m = wait_until(lambda: self.logged(r"Palfrey running on http://[\d.]+:(\d+)")
                       or self.proc.poll() is not None, START_TIMEOUT)
        expect(isinstance(m, re.Match), f"no running line\n{self.log()}")
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        self.pid = int(children.split()[0])
        return int(m.group(1))

    def nsenter(self, *argv: str, root: bool = False, **kwargs) -> subprocess.CompletedProcess:
        """Run argv in the container's network namespace (with ``root``: also its PID
        and mount namespaces, root, working directory and user, as ``docker exec``)."""
        prefix = ["nsenter", f"--target={self.pid}", "--net"]
        if root:
            uid, gid, _ = self.image.ids()
            prefix += ["--pid", "--mount", "--root", "--wd", f"--setuid={uid}",
                       f"--setgid={gid}"]
        return subprocess.run([*prefix, "--", *argv], text=True, capture_output=True,
                              env=self.image.container_env() if root else None, timeout=60,
                              **kwargs)

    def stop(self) -> int | None:
        """SIGTERM to PID 1 from outside (docker stop), then unshare's exit status, which
        is PID 1's."""
        if self.pid and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            status = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
            return None
        self.reader.join(5)
        return status


CLIENT = """
import sys
sys.path.insert(0, {scripts!r})
import wheel_smoke
class Target:
    port = {port}
for check in wheel_smoke.CHECKS:
    print("ok ", check(Target))
"""


def check_container(image: Image, extra: list[str], started: float) -> None:
    label = " ".join(extra) or "one process"
    container = Container(image, extra)
    try:
        port = container.wait_running()
        expect(port in image.ports, f"listening on {port}, EXPOSE says {image.ports}")
        status = Path(f"/proc/{container.pid}/status").read_text()
        expect(re.search(r"^NSpid:\s+\d+\s+1$", status, re.MULTILINE),
               f"Palfrey is not PID 1:\n{status}")
        uid, gid, _ = image.ids()
        expect(re.search(rf"^Uid:\s+{uid}\s", status, re.MULTILINE), f"PID 1 is not uid {uid}")
        expect(re.search(rf"^Gid:\s+{gid}\s", status, re.MULTILINE), f"PID 1 is not gid {gid}")
        expect(container.logged(r"Started (?:server|parent) process \[1\]"), container.log())
        step(f"[{label}] Palfrey is PID 1 (uid {uid}, gid {gid}), serving on :{port} in its "
             "own network namespace", started)

        client = container.nsenter(sys.executable, "-c",
                                   CLIENT.format(scripts=str(REPO / "scripts"), port=port))
        expect(client.returncode == 0, f"requests failed:\n{client.stdout}{client.stderr}\n"
                                       f"{container.log()}")
        step(f"[{label}] " + "; ".join(client.stdout.split("\n")[:-1]).replace("ok  ", ""),
             started)
        health = container.nsenter(*image.healthcheck, root=True)
        expect(health.returncode == 0, f"HEALTHCHECK exited {health.returncode}: "
                                       f"{health.stdout}{health.stderr}")
        step(f"[{label}] HEALTHCHECK exits 0 inside the container", started)

        workers: set[int] = set()
        if "--workers" in extra:
            workers = reap_check(container, int(extra[extra.index("--workers") + 1]), label,
                                 started)

        code = container.stop()
        expect(code == 0, f"exit status {code} after SIGTERM\n{container.log()}")
        finished = {int(m) for m in re.findall(r"Finished server process \[(\d+)\]",
                                                container.log())}
        expected = workers or {1}
        expect(expected <= finished, f"not finished gracefully: {expected - finished}\n"
                                     f"{container.log()}")
        if workers:
            expect(container.logged(r"Stopping parent process \[1\]"), container.log())
        step(f"[{label}] SIGTERM -> exit 0; graceful finish logged by "
             f"{', '.join(f'[{p}]' for p in sorted(expected))}", started)
    finally:
        if container.proc.poll() is None:
            os.killpg(container.proc.pid, signal.SIGKILL)
            container.proc.wait(STOP_TIMEOUT)


def reap_check(container: Container, count: int, label: str, started: float) -> set[int]:
    """Kill a worker with SIGKILL: PID 1 must reap it (no zombie) and start another.
    Returns the namespace pids of the workers serving at the end."""

    def workers() -> dict[int, tuple[int, str, str]]:
        return {h: v for h, v in ns_processes(container.pid).items()
                if "spawn_main" in v[2] and v[1] != "Z"}

    first = wait_until(lambda: len(workers()) == count and workers(), WORKER_TIMEOUT)
    expect(first, f"not {count} workers: {ns_processes(container.pid)}")
    victim_host, (victim, _, _) = sorted(first.items())[0]
    os.kill(victim_host, signal.SIGKILL)

    def settled() -> bool:
        everyone = ns_processes(container.pid)
        return (victim_host not in everyone and len(workers()) == count
                and not any(state == "Z" for _, state, _ in everyone.values()))

    expect(wait_until(settled, WORKER_TIMEOUT),
           f"killed worker [{victim}] not reaped and replaced: {ns_processes(container.pid)}")
    expect(container.logged(rf"Child process \[{victim}\] died"), container.log())
    now = {nspid for nspid, _, _ in workers().values()}
    step(f"[{label}] worker [{victim}] killed with SIGKILL: reaped by PID 1 (no zombie), "
         f"replaced; workers now {sorted(now)}", started)
    # The replacement must be serving before SIGTERM, so that its finish is logged too.
    expect(wait_until(lambda: all(container.logged(rf"Started server process \[{p}\]")
                                  and container.logged(r"Application startup complete")
                                  for p in now), WORKER_TIMEOUT), container.log())
    return now


# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where the debootstrap tree is kept (default %(default)s)")
    parser.add_argument("--mirror", help="Debian mirror for debootstrap (default: its own)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    options = parser.parse_args(argv)
    started = time.monotonic()
    expect(os.geteuid() == 0, "run as root (debootstrap, chroot, unshare)")
    global_args, stages = parse_dockerfile(DOCKERFILE)
    by_name = {s.name: s for s in stages}
    expect({"builder", "runtime"} <= set(by_name), "stages 'builder' and 'runtime' expected")
    runtime = by_name["runtime"]
    expect(stages[-1] is runtime, "the runtime stage must be the last (the image)")
    python, release = base_image(runtime)
    expect(base_image(by_name["builder"]) == (python, release), "builder and runtime differ")

    rootfs = cached_rootfs(options.cache, release, python, options.mirror, started)
    work = Path(tempfile.mkdtemp(prefix="palfrey-container-"))
    try:
        wheels = builder_stage(by_name["builder"], global_args, python, work, started)
        root = work / "root"
        run(["cp", "-a", str(rootfs), str(root)])
        step(f"runtime: fresh copy of {rootfs.name} (Python {python}, no compiler)", started)
        image = runtime_stage(runtime, global_args, root, wheels, started)
        expect(not (root / "wheels").exists(), "the wheels stayed in the image")
        for extra in ([], ["--workers", "2"]):
            check_container(image, extra, started)
    except CheckFailed as exc:
        print(f"CONTAINER CHECK FAILED: {exc}", flush=True)
        return 1
    finally:
        if options.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    step("container check passed", started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
