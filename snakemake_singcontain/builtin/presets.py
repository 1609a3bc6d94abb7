"""Presets every policy can `use`: the read-only software trees of HEP sites."""

from ..hooks import hookimpl


@hookimpl
def singcontain_presets():
    return {
        "cvmfs": {"binds": [{"src": "${CVMFS_ROOT:-/cvmfs}", "dst": "/cvmfs", "mode": "ro"}]},
        "afs": {"binds": [{"src": "${AFS_ROOT:-/afs}", "dst": "/afs", "mode": "ro"}]},
    }
