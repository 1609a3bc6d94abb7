"""Checks of what the runtime on this host will actually grant, from its apptainer.conf and the kernel."""

from ..findings import ERROR, WARNING, Finding
from ..hooks import hookimpl


@hookimpl
def singcontain_check_rule(plan, runtime):
    s, rule = plan.settings, plan.rule
    if plan.image is None:
        return
    if runtime is None:
        yield Finding("SC208", ERROR, rule, "no apptainer or singularity command was found on PATH",
                      "load the site's apptainer module, or install Apptainer (https://apptainer.org/docs/admin/latest/installation.html)")
        return
    conf = runtime.conf_file or "apptainer.conf"
    if runtime.conf_error:  # fail closed: what the configuration grants cannot be verified
        asked = [f"a {ns} namespace" for ns in s.effective_namespaces if ns != "net"] + ["user binds"]
        yield Finding("SC214", ERROR, rule, f"the runtime's configuration {conf} cannot be read ({runtime.conf_error}), "
                      f"so whether it grants {', '.join(asked)} cannot be verified",
                      "make the file readable to you, or ask the site admin which settings it holds")
        return
    for ns in s.effective_namespaces:
        # Measured with `allow pid ns = no`: the runtime only warns and runs the job in the host's namespace.
        if ns != "net" and not runtime.allows(f"allow {ns} ns"):
            yield Finding("SC201", ERROR, rule, f"a {ns} namespace is asked for, but {conf} says 'allow {ns} ns = no' "
                          "(the runtime would run the job in the host's namespace)",
                          f"ask the site to allow {ns} namespaces, or drop {ns} for this rule"
                          + (" (containall implies pid and ipc)" if s.containment == "containall" else ""),
                          where=s.origins.get("namespaces") or s.origins.get("containment"))
    if not runtime.allows("user bind control"):
        yield Finding("SC202", ERROR, rule, f"{conf} says 'user bind control = no': binds are ignored and "
                      "Snakemake's --home is refused", "ask the site to enable user bind control, or run this rule elsewhere")
    if not runtime.setuid and not runtime.userns:
        yield Finding("SC203", ERROR, rule, "unprivileged user namespaces are disabled on this host and the runtime "
                      "is not installed setuid, so no container can start",
                      "enable user namespaces (sysctl user.max_user_namespaces) or use a setuid installation")
    elif "user" in s.namespaces and not runtime.userns:
        yield Finding("SC203", ERROR, rule, "a user namespace is asked for but unprivileged user namespaces are disabled",
                      "drop 'user' from namespaces, or enable user namespaces", where=s.origins.get("namespaces"))
    if "net" in s.namespaces and s.network != "none":
        allowed = [n.strip() for v in runtime.conf.get("allow net networks", ()) for n in v.split(",")]
        if not runtime.setuid or s.network not in allowed:
            yield Finding("SC204", ERROR, rule, f"network '{s.network}' is not available to users here "
                          f"(allowed: {allowed or 'none'}; setuid: {runtime.setuid})",
                          "use network: none (loopback only), or ask the site to allow the network",
                          where=s.origins.get("network"))
    if runtime.allows("mount hostfs", default=False) and s.containment != "none":
        yield Finding("SC205", WARNING, rule, f"{conf} says 'mount hostfs = yes': every host filesystem is visible "
                      "despite --contain", "ask the site to set 'mount hostfs = no'")
