"""How the plugin stops a run or a job: Snakemake's own WorkflowError, one message, no frames."""

import functools

PREFIX = "snakemake-singcontain"


@functools.cache
def _refused_class():
    """One class per process (made when first needed: Snakemake is imported by then), so that it can be caught."""
    from snakemake.exceptions import WorkflowError

    class ContainmentRefused(WorkflowError):
        # Snakemake prints the frames of a WorkflowError raised outside its own package; a user error
        # is one message, so this one shows no frames.
        @property
        def __traceback__(self):
            return None

        @__traceback__.setter
        def __traceback__(self, value):
            pass

    return ContainmentRefused


def workflow_error(message: str):
    # A path that is not UTF-8 (kept by Python as surrogates) would break Snakemake's logging.
    text = f"{PREFIX}: {message}".encode("utf-8", "backslashreplace").decode("utf-8")
    return _refused_class()(text)
