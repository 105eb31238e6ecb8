"""Builder providers: installed packages declare, in package metadata, the
module whose import registers their architectures; the library imports it
only then, and never a module a file names."""
import subprocess
import sys
import textwrap


def _run(code, extra_path):
    env_path = f"import sys; sys.path.insert(0, {str(extra_path)!r})\n"
    out = subprocess.run([sys.executable, "-c", env_path + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()


def _fake_distribution(root, module, entry_name):
    """A package installed as metadata only: a ``.dist-info`` folder that
    declares ``module`` as an ``inn_ms.builders`` provider, and the module."""
    info = root / "fakeprovider-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeprovider\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[inn_ms.builders]\n{entry_name} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent("""
        from inn_ms.builders import register_builder
        print("provider imported")
        register_builder("fake_net", discrete=lambda **kw: None, task="classification", input="image")
    """))


def test_this_project_declares_its_zoo():
    """The editable install's metadata names ``model_zoo``, and a zoo name
    resolves in a fresh process that never imported the zoo itself."""
    lines = _run("""
        import sys
        from inn_ms.builders import providers, find_builder
        print("model_zoo" in providers(), "model_zoo" in sys.modules)
        print(find_builder("mnist_cnn").task, "model_zoo" in sys.modules)
    """, ".")
    assert lines == ["True False", "classification True"]


def test_an_installed_provider_registers_on_first_unknown_name(tmp_path):
    _fake_distribution(tmp_path, "fake_inn_provider", "fake")
    lines = _run("""
        import sys
        from inn_ms.builders import providers, find_builder, registered_builders
        print("fake_inn_provider" in providers(), "fake_inn_provider" in sys.modules)
        b = find_builder("fake_net")
        print(b.name, b.task, "fake_net" in registered_builders())
    """, tmp_path)
    assert lines == ["True False", "provider imported", "fake_net classification True"]


def test_a_provider_is_not_imported_for_a_known_name(tmp_path):
    """Registered names resolve without importing any provider."""
    _fake_distribution(tmp_path, "fake_inn_provider", "fake")
    lines = _run("""
        import sys
        from inn_ms.builders import register_builder, find_builder
        register_builder("mine", discrete=lambda **kw: None)
        print(find_builder("mine").name, "fake_inn_provider" in sys.modules, "model_zoo" in sys.modules)
    """, tmp_path)
    assert lines == ["mine False False"]


def test_a_broken_provider_is_named_and_skipped(tmp_path):
    """A declared provider whose module is missing is logged, not raised:
    other providers still register."""
    _fake_distribution(tmp_path, "no_such_inn_provider_module", "broken")
    (tmp_path / "no_such_inn_provider_module.py").unlink()
    lines = _run("""
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=__import__("sys").stdout)
        from inn_ms.builders import find_builder
        print(find_builder("mnist_cnn").name)
    """, tmp_path)
    assert any("no_such_inn_provider_module could not be imported" in line for line in lines), lines
    assert lines[-1] == "mnist_cnn"
