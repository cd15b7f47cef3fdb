"""Documentation that runs: every ``>>>`` example in the package's docstrings, executed by
doctest with the small models, inputs and files of :mod:`tests.docs_namespace` (ellipsis and
whitespace-normalised comparison), each docstring in a fresh copy of the names."""

import doctest
import importlib
import os
import pkgutil

import pytest

import converters
import jaxretina
from tests import docs_namespace


def _modules():
    names = []
    for package in (jaxretina, converters):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            names.append(info.name)
    return sorted(n for n in names if n != "jaxretina.__main__")


MODULES = _modules()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    docs_namespace.make_files(root)
    return root


@pytest.fixture(scope="module")
def names(workdir):
    return docs_namespace.namespace(workdir)


def _tests(module_name, globs):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, module_name, extraglobs=globs) if t.examples]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name, names, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HOME", str(workdir))
    tests = _tests(module_name, names)
    if not tests:
        pytest.skip("no >>> examples")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in tests:
        result = runner.run(test, out=failures.append)
    assert not failures, "".join(failures)[-6000:]
