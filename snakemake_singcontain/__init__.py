"""Per-rule Apptainer/Singularity containment and bind policies for Snakemake, checked before submission.

In a Snakefile:

    from snakemake_singcontain import contain
    contain(workflow, "containment.yaml")
"""

__version__ = "0.1.0"


def contain(workflow, policy_file: str = "containment.yaml") -> None:
    """Run every job of `workflow` under the per-rule policy in `policy_file` (relative to the Snakefile's folder)."""
    from .bridge import contain as _contain

    _contain(workflow, policy_file)
