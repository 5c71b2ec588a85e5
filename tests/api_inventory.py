"""What the package exposes: public layers and documented public objects."""

import importlib
import inspect
import pkgutil
import re

import keras

_SECTION_HEADER = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")

PUBLIC_MODULES = (
    "keras_attention",
    "keras_attention.ops",
    "keras_attention.layers",
    "keras_attention.models",
    "keras_attention.generation",
    "keras_attention.training",
    "keras_attention.data",
    "keras_attention.tuning",
    "keras_attention.distribute",
    "keras_attention.export",
    "keras_attention.visualization",
)


def public_modules():
    """`PUBLIC_MODULES` plus every subpackage of `keras_attention` that
    declares `__all__` (e.g. `keras_attention.layers.memory`), so a new
    subpackage cannot slip past the meta-tests."""
    names = list(PUBLIC_MODULES)
    package = importlib.import_module("keras_attention")
    for info in pkgutil.walk_packages(package.__path__, "keras_attention."):
        if not info.ispkg or info.name in names:
            continue
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            names.append(info.name)
    return names


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    return list(names)


def public_objects():
    """(qualified name, object) for every public class and function."""
    seen = {}
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("keras_attention"):
                continue
            seen.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj))
    return sorted(seen.values(), key=lambda item: item[0])


def public_layers():
    module = importlib.import_module("keras_attention.layers")
    return [
        getattr(module, name)
        for name in module.__all__
        if inspect.isclass(getattr(module, name))
        and issubclass(getattr(module, name), keras.layers.Layer)
    ]


def docstring_section(doc, header):
    """Lines of a Google-style docstring section (dedented), or None."""
    if not doc:
        return None
    lines = inspect.cleandoc(doc).splitlines()
    for i, line in enumerate(lines):
        if line.strip() == header and len(line) - len(line.lstrip()) == 0:
            body = []
            in_fence = False
            for nxt in lines[i + 1 :]:
                if nxt.strip().startswith("```"):
                    in_fence = not in_fence
                elif not in_fence and _SECTION_HEADER.match(nxt):
                    break
                body.append(nxt)
            return body
    return None


def documented_args(doc):
    """Argument names listed under `Args:` (one indentation level deep)."""
    body = docstring_section(doc, "Args:")
    if body is None:
        return None
    names = []
    for line in body:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if indent == 4 and ":" in stripped:
            name = stripped.split(":", 1)[0].split(" ", 1)[0]
            names.append(name)
    return names


def example_blocks(doc):
    """Python code blocks of the `Example:` section."""
    body = docstring_section(doc, "Example:")
    if body is None:
        return []
    text = "\n".join(body)
    blocks = []
    parts = text.split("```")
    for j in range(1, len(parts), 2):
        block = parts[j]
        if block.startswith("python"):
            block = block[len("python") :]
        blocks.append(inspect.cleandoc("\n" + block) if block.strip() else "")
    return [b for b in blocks if b.strip()]
