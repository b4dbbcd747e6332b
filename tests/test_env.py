"""Environment files, check_env.py and the conda create/pack/unpack scripts (no conda needed)."""
import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli, load_script

ENV_YML = REPO / "env" / "environment.yml"
REQUIREMENTS = REPO / "env" / "requirements.txt"
REQUIREMENTS_DEV = REPO / "env" / "requirements-dev.txt"

# conda-forge name -> pip name where they differ
CONDA_TO_PIP = {"matplotlib-base": "matplotlib"}
# in environment.yml only: the interpreter, pip itself, a font and the packing tool
CONDA_ONLY = {"python", "pip", "font-ttf-noto-cjk", "conda-pack"}
# torch minor -> matching torchvision minor (each torchvision release is built for one torch release)
TORCH_TORCHVISION = {"2.8": "0.23", "2.9": "0.24", "2.10": "0.25", "2.11": "0.26", "2.12": "0.27",
                     "2.13": "0.28", "2.14": "0.29"}


def read_requirements(path: Path) -> dict:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: '{line}' is not pinned with =="
        pins[name.strip().lower()] = version.strip()
    return pins


def read_environment() -> tuple:
    """(conda pins {name: (version, build)}, pip pins {name: version}, pip option lines)."""
    env = yaml.safe_load(ENV_YML.read_text())
    conda, pip, options = {}, {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("-"):
                    options.append(line)
                    continue
                name, sep, version = line.partition("==")
                assert sep, f"pip entry '{line}' is not pinned with =="
                pip[name.lower()] = version
        else:
            name, _, rest = dep.partition("=")
            version, _, build = rest.partition("=")
            conda[name.lower()] = (version, build)
    return env, conda, pip, options


def public_version(version: str) -> str:
    return version.split("+")[0]


def test_environment_yml_parses_and_uses_conda_forge_only():
    env, conda, pip, options = read_environment()
    assert env["name"] == "rheed"
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert re.fullmatch(r"3\.\d+", conda["python"][0]), conda["python"]
    assert {"torch", "torchvision", "timm"} <= set(pip)
    assert "pytorch" not in conda and "torch" not in conda, "torch must come from one place only"


def test_environment_and_requirements_pin_the_same_packages():
    _, conda, pip, _ = read_environment()
    requirements = read_requirements(REQUIREMENTS)
    from_env = {CONDA_TO_PIP.get(name, name): version for name, (version, _) in conda.items()
                if name not in CONDA_ONLY}
    for name, version in pip.items():
        assert name not in from_env, f"{name} is in both the conda and the pip part"
        from_env[name] = public_version(version)
    unpinned = [name for name, (version, _) in conda.items() if name not in CONDA_ONLY and not version]
    assert not unpinned, f"unpinned conda packages: {unpinned}"
    assert set(from_env) == set(requirements), (
        f"only in environment.yml: {sorted(set(from_env) - set(requirements))}; "
        f"only in requirements.txt: {sorted(set(requirements) - set(from_env))}")
    differ = {n: (from_env[n], requirements[n]) for n in requirements if from_env[n] != requirements[n]}
    assert not differ, f"versions differ (environment.yml, requirements.txt): {differ}"


def test_torch_and_torchvision_are_a_matching_pair():
    requirements = read_requirements(REQUIREMENTS)
    torch_minor = ".".join(requirements["torch"].split(".")[:2])
    vision_minor = ".".join(requirements["torchvision"].split(".")[:2])
    assert TORCH_TORCHVISION[torch_minor] == vision_minor, (requirements["torch"], requirements["torchvision"])


def test_environment_takes_a_cuda12_torch_build():
    _, conda, pip, options = read_environment()
    index = [o for o in options if o.startswith("--index-url")]
    assert len(index) == 1
    match = re.fullmatch(r"--index-url https://download\.pytorch\.org/whl/(cu12\d)", index[0])
    assert match, f"torch must come from a CUDA 12.x wheel index (server driver: CUDA 12.8), got {index[0]}"
    assert "--extra-index-url https://pypi.org/simple" in options  # timm and torch's own deps
    tag = match.group(1)
    assert pip["torch"].endswith(f"+{tag}") and pip["torchvision"].endswith(f"+{tag}")
    # a CUDA onnxruntime would bring a second cuDNN next to the torch wheel's
    assert conda["onnxruntime"][1] == "*_cpu"


def test_requirements_dev_includes_runtime_and_test_tools():
    lines = [line.strip() for line in REQUIREMENTS_DEV.read_text().splitlines()]
    assert "-r requirements.txt" in lines
    dev = read_requirements(REQUIREMENTS_DEV)
    assert {"pytest", "pytest-xdist", "pyyaml"} <= set(dev)


def test_test_script_refuses_a_bad_worker_count_before_touching_a_virtualenv(tmp_path):
    venv = tmp_path / "venv"
    result = subprocess.run(["bash", str(REPO / "scripts" / "test.sh")], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TEST_WORKERS": "two", "VENV": str(venv)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: TEST_WORKERS must be a whole number of test processes, got 'two'"]
    assert not venv.exists()


def test_this_interpreter_has_the_pinned_versions():
    """The suite runs against exactly what requirements(-dev).txt pins (scripts/test.sh installs it)."""
    pins = {**read_requirements(REQUIREMENTS), **read_requirements(REQUIREMENTS_DEV)}
    wrong = {}
    for name, version in pins.items():
        installed = importlib.metadata.version(name)
        if public_version(installed) != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs pinned: {wrong}"


# ---------------------------------------------------------------- check_env.py

def load_check_env():
    return load_script("check_env")


def test_arch_supports_uses_binary_compatibility():
    from rheed.envcheck import arch_supports
    cu126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
    assert arch_supports(cu126, 8, 9)          # RTX 4090 runs the sm_86 kernels
    assert arch_supports(cu126, 9, 0)
    assert not arch_supports(cu126, 12, 0)     # Blackwell needs sm_120 or PTX
    assert not arch_supports(["sm_90"], 8, 9)  # no older-major fallback
    assert arch_supports(["sm_80", "compute_80"], 12, 0)  # PTX is JIT-compiled upwards
    assert not arch_supports(["sm_86"], 8, 0)


def check_lines(stdout: str) -> dict:
    lines = {}
    for line in stdout.splitlines():
        match = re.match(r"(PASS|FAIL) (\w+): (.*)", line)
        if match:
            lines[match.group(2)] = (match.group(1), match.group(3))
    return lines


def test_check_env_cpu_passes_here(tiny_split, tmp_path):
    proc = run_cli(["scripts/check_env.py", "--cpu", "--output_dir", tmp_path / "out", "--min_free_gb", "0.01",
                    "--data_path", tiny_split], timeout=300)
    lines = check_lines(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(lines) == {"versions", "imports", "model_cpu", "ddp_gloo", "disk", "data"}
    assert all(status == "PASS" for status, _ in lines.values()), lines
    assert "timm 0.3.2" in lines["versions"][1]
    assert "2 processes, backend gloo" in lines["ddp_gloo"][1]
    assert "classes ['rough', 'smooth']" in lines["data"][1]
    assert proc.stdout.strip().splitlines()[-1] == "check_env: all 6 checks PASS"


def test_check_env_reports_missing_package_bad_data_and_disk(tiny_split, tmp_path):
    # a copy of the split with one truncated PNG
    broken = tmp_path / "split"
    for src in tiny_split.rglob("*.png"):
        dst = broken / src.relative_to(tiny_split)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    bad = broken / "val" / "rough" / "rough_000.png"
    bad.write_bytes(bad.read_bytes()[:40])
    # av made unimportable the way a missing package is: its import raises ImportError
    code = ("import runpy, sys; sys.modules['av'] = None; "
            "sys.argv = ['check_env.py'] + sys.argv[1:]; "
            "runpy.run_path('scripts/check_env.py', run_name='__main__')")
    proc = run_cli(["-c", code, "--cpu", "--output_dir", tmp_path, "--min_free_gb", "1e9", "--only",
                    "versions,imports,disk,data", "--data_path", broken,
                    "--require", "extra_pkg_that_does_not_exist"], timeout=300)
    lines = check_lines(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    status, detail = lines["imports"]
    assert status == "FAIL"
    assert "av (av:" in detail and "extra_pkg_that_does_not_exist" in detail
    assert "env/requirements.txt" in detail
    assert lines["disk"][0] == "FAIL" and "need 1e+09 GB" in lines["disk"][1]
    assert lines["data"][0] == "FAIL" and "1 unreadable image" in lines["data"][1] and str(bad) in lines["data"][1]
    assert set(lines) == {"versions", "imports", "disk", "data"} and lines["versions"][0] == "PASS"
    assert proc.stdout.strip().splitlines()[-1] == "check_env: 3 of 4 checks FAILED"


def test_check_env_data_layout_errors(tmp_path):
    (tmp_path / "train" / "smooth").mkdir(parents=True)
    from rheed.envcheck import CheckFailed, check_data
    args = load_check_env().get_args_parser().parse_args(["--cpu", "--data_path", str(tmp_path)])
    with pytest.raises(CheckFailed, match=r"lacks val, test/"):
        check_data(args)


# ---------------------------------------------------------------- create / pack / unpack

STUB_CONDA = r"""#!/usr/bin/env bash
echo "CONDA_OVERRIDE_CUDA=${CONDA_OVERRIDE_CUDA:-} conda $*" >> "$STUB_LOG"
case "$1" in
    env)
        if [ "$2" = list ]; then echo "base  /opt/conda"; [ -n "${STUB_EXISTING:-}" ] && echo "rheed  /opt/conda/envs/rheed"; fi
        exit 0 ;;
    run)
        shift 3
        if [[ "$*" == *sys.prefix* ]]; then echo "$STUB_PREFIX"; exit 0; fi
        exec "$@" ;;
esac
"""


def run_script(script: str, tmp_path: Path, env=None, args=()):
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir(exist_ok=True)
    (stub_dir / "conda").write_text(STUB_CONDA)
    (stub_dir / "conda").chmod(0o755)
    (stub_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (stub_dir / "python").chmod(0o755)
    full_env = dict(os.environ, PATH=f"{stub_dir}:{os.environ['PATH']}", STUB_LOG=str(tmp_path / "conda.log"))
    full_env.update(env or {})
    return subprocess.run(["bash", str(REPO / "scripts" / script), *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_create_env_dry_run_prints_the_commands(tmp_path):
    proc = run_script("create_env.sh", tmp_path, env={"DRY_RUN": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "+ export CONDA_OVERRIDE_CUDA=12.8" in proc.stdout
    assert "+ conda env create -n rheed -f env/environment.yml" in proc.stdout
    assert "+ conda run -n rheed python scripts/check_env.py --cpu" in proc.stdout
    assert not (tmp_path / "conda.log").exists()


def test_create_env_forces_cuda_and_rejects_a_non_cuda12_torch(tmp_path):
    # The stub runs `conda run` commands with this interpreter, whose torch is the PyPI CUDA 13.0 build:
    # the script must create the env with the CUDA override, then refuse that torch.
    proc = run_script("create_env.sh", tmp_path)
    log = (tmp_path / "conda.log").read_text()
    assert "CONDA_OVERRIDE_CUDA=12.8 conda env create -n rheed -f env/environment.yml" in log
    assert proc.returncode == 1
    assert "CUDA build 13.0" in proc.stdout
    assert "error: the torch in env 'rheed' is not a CUDA 12.x build" in proc.stderr
    assert "check_env.py" not in log


def test_create_env_refuses_to_replace_an_existing_env(tmp_path):
    proc = run_script("create_env.sh", tmp_path, env={"STUB_EXISTING": "1"})
    assert proc.returncode == 1
    assert "already exists; rerun with RECREATE=1" in proc.stderr
    assert "env create" not in (tmp_path / "conda.log").read_text()


def test_pack_env_writes_tarball_and_checksum_and_never_overwrites(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "conda-pack").write_text('#!/usr/bin/env bash\necho "$@" > "$STUB_PACK_ARGS"\n'
                                               'echo packed-env > "${@: -1}"\n')
    (prefix / "bin" / "conda-pack").chmod(0o755)
    out = tmp_path / "env.tar.gz"
    env = {"STUB_PREFIX": str(prefix), "STUB_PACK_ARGS": str(tmp_path / "pack_args"), "PACK_OUT": str(out)}
    proc = run_script("pack_env.sh", tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pack_args").read_text().split() == ["-p", str(prefix), "-o", str(out)]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert (tmp_path / "env.tar.gz.sha256").read_text().split()[0] == digest
    assert f"bash scripts/unpack_env.sh {out}" in proc.stdout
    again = run_script("pack_env.sh", tmp_path, env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert out.read_text() == "packed-env\n"


def make_fake_packed_env(tmp_path: Path) -> Path:
    env = tmp_path / "fake_env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "activate").write_text('export PATH="$(dirname "${BASH_SOURCE[0]}"):$PATH"\n')
    (env / "bin" / "conda-unpack").write_text('#!/usr/bin/env bash\ntouch "$(dirname "$0")/../unpacked"\n')
    (env / "bin" / "conda-unpack").chmod(0o755)
    (env / "lib").mkdir()
    (env / "lib" / "payload.txt").write_text("payload")
    tarball = tmp_path / "rheed-env.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in env.rglob("*"):
            tar.add(path, arcname=str(path.relative_to(env)), recursive=False)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    (tmp_path / "rheed-env.tar.gz.sha256").write_text(f"{digest}  rheed-env.tar.gz\n")
    return tarball


def test_unpack_env_checks_sum_extracts_and_runs_conda_unpack(tmp_path):
    tarball = make_fake_packed_env(tmp_path)
    target = tmp_path / "envs" / "rheed"
    proc = run_script("unpack_env.sh", tmp_path, args=[tarball, target])
    assert proc.returncode == 0, proc.stderr
    assert "checksum OK" in proc.stdout
    assert (target / "lib" / "payload.txt").read_text() == "payload"
    assert (target / "unpacked").exists(), "conda-unpack did not run"
    assert f"source {target}/bin/activate" in proc.stdout
    # a second unpack into the same (now non-empty) folder is refused
    again = run_script("unpack_env.sh", tmp_path, args=[tarball, target])
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_unpack_env_rejects_a_corrupt_copy(tmp_path):
    tarball = make_fake_packed_env(tmp_path)
    tarball.write_bytes(tarball.read_bytes()[:-10])
    target = tmp_path / "target"
    proc = run_script("unpack_env.sh", tmp_path, args=[tarball, target])
    assert proc.returncode == 1
    assert "does not match" in proc.stderr
    assert not target.exists()
