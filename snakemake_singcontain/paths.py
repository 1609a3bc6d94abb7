"""Host and container paths as the runtime sees them."""

import posixpath


def clean(path: str) -> str:
    """normpath, and '//x' (which POSIX normpath keeps) is '/x' to Apptainer and the kernel."""
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def under(path: str, parent: str) -> bool:
    return path == parent or parent == "/" or path.startswith(parent.rstrip("/") + "/")


def parent(path: str) -> str:
    """posixpath.dirname of a clean absolute path, at a third of its cost (it runs for every job of a DAG)."""
    return path[:path.rfind("/")] or "/"
