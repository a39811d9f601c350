"""requirements.txt (the pinned, tested set) and pyproject.toml (what the package declares) agree."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pinned() -> dict[str, Requirement]:
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    requirements = [Requirement(line) for line in lines if line]
    return {canonicalize_name(r.name): r for r in requirements}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    everything = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return [Requirement(d) for d in everything if canonicalize_name(Requirement(d).name) != project["name"]]


def test_every_requirement_is_pinned_to_one_version():
    for name, requirement in pinned().items():
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"requirements.txt: {requirement} is not pinned with =="


def test_declared_ranges_admit_the_pinned_versions_and_nothing_is_left_out():
    pins = pinned()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pyproject.toml declares {requirement} but requirements.txt does not pin it"
        (version,) = [spec.version for spec in pins[name].specifier]
        assert requirement.specifier.contains(version, prereleases=True), f"{requirement} excludes the tested {version}"
    declared_names = {canonicalize_name(r.name) for r in declared()}
    assert set(pins) <= declared_names, f"pinned but never declared: {sorted(set(pins) - declared_names)}"


def test_ray_comes_without_its_dashboard_extras():
    assert not pinned()["ray"].extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [Requirement(d).extras for d in project["optional-dependencies"]["cluster"]] == [set()]
