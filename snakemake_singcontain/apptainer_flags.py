"""Apptainer's `exec` flags and APPTAINER_*/SINGULARITY_* variables, each in one class: an allow-list.

The table is Apptainer's own (cmd/internal/cli/action_flags.go and the global flags of apptainer.go, see
TABLE_VERSION), one line per flag with its class:

- OWNED:  the plugin (or Snakemake: --home, --pwd, --bind) sets it from the policy, or it undoes such a
          setting; passing it elsewhere would make the job differ from what the checks approved.
- SAFE:   a user may pass it: it cannot widen what the job sees or can write, nor run a host program.
- DENIED: everything else.

A word that is not in the table is refused like a DENIED one, and so is every APPTAINER_*/SINGULARITY_*
variable not classified SAFE: a new Apptainer flag or variable is refused until someone classifies it
(tests/integration/test_apptainer_flag_table.py fails when the installed Apptainer has one we lack).
Each flag also reads the variables APPTAINER_<KEY> and SINGULARITY_<KEY> for its env keys (pkg/cmdline).
"""

from collections.abc import Mapping, Sequence
from typing import NamedTuple

# apptainer/apptainer tag v1.4.5: cmd/internal/cli/action_flags.go (the flags registered for ExecCmd; not
# --boot, --dmtcp-*, --shell, --runscript-timeout, which are for instance/shell/run only) and apptainer.go.
TABLE_VERSION = "1.4.5"
ENV_PREFIXES = ("APPTAINER_", "SINGULARITY_")

OWNED, SAFE, DENIED = "owned", "safe", "denied"


class Flag(NamedTuple):
    name: str
    short: str           # one letter, or ""
    value: bool          # takes a value (any word, even one starting with '-', as pflag does)
    cls: str
    env: tuple = ()      # keys: APPTAINER_<KEY> and SINGULARITY_<KEY> set the flag
    hidden: bool = False  # not shown by `apptainer exec --help`


EXEC_FLAGS = (
    # OWNED: the policy's containment, namespaces, network, cleanenv/env, writable_tmpfs, gpu and binds,
    # and Snakemake's own --home/--pwd/--bind; the negations and aliases that would undo them.
    Flag("bind", "B", True, OWNED, ("BIND", "BINDPATH")),
    Flag("mount", "", True, OWNED, ("MOUNT",)),
    Flag("home", "H", True, OWNED, ("HOME",)),
    Flag("no-home", "", False, OWNED, ("NO_HOME",)),
    Flag("cwd", "", True, OWNED, ("CWD", "TARGET_CWD")),
    Flag("pwd", "", True, OWNED, ("PWD", "TARGET_PWD"), hidden=True),
    Flag("contain", "c", False, OWNED, ("CONTAIN",)),
    Flag("containall", "C", False, OWNED, ("CONTAINALL",)),
    Flag("compat", "", False, OWNED, ("COMPAT",)),  # implies --containall, --writable-tmpfs, ...
    Flag("cleanenv", "e", False, OWNED, ("CLEANENV",)),
    Flag("env", "", True, OWNED, ()),
    Flag("env-file", "", True, OWNED, ("ENV_FILE",)),
    Flag("pid", "p", False, OWNED, ("PID", "UNSHARE_PID")),
    Flag("no-pid", "", False, OWNED, ("NO_PID",)),
    Flag("ipc", "i", False, OWNED, ("IPC", "UNSHARE_IPC")),
    Flag("net", "n", False, OWNED, ("NET", "UNSHARE_NET")),
    Flag("network", "", True, OWNED, ("NETWORK",)),
    Flag("network-args", "", True, OWNED, ("NETWORK_ARGS",)),
    Flag("uts", "", False, OWNED, ("UTS", "UNSHARE_UTS")),
    Flag("userns", "u", False, OWNED, ("USERNS", "UNSHARE_USERNS")),
    Flag("writable-tmpfs", "", False, OWNED, ("WRITABLE_TMPFS",)),
    Flag("nv", "", False, OWNED, ("NV",)),
    Flag("no-nv", "", False, OWNED, ("NV_OFF", "NO_NV"), hidden=True),

    # SAFE, inside the container only: they pick what runs in the image or narrow what it sees.
    Flag("app", "", True, SAFE, ("APP", "APPNAME")),  # an app (SCIF) of the image: its env and command
    Flag("no-init", "", False, SAFE, ("NOSHIMINIT",)),  # no shim PID 1 under --pid
    Flag("no-eval", "", False, SAFE, ("NO_EVAL",)),  # variables are not shell-evaluated
    Flag("no-umask", "", False, SAFE, ("NO_UMASK",)),  # umask 0022 for the job's files; it can chmod them anyway
    Flag("hostname", "", True, SAFE, ("HOSTNAME",)),  # implies a new UTS namespace
    Flag("dns", "", True, SAFE, ("DNS",)),  # the container's own resolv.conf
    Flag("drop-caps", "", True, SAFE, ("DROP_CAPS",)),  # only removes capabilities
    Flag("no-privs", "", False, SAFE, ("NO_PRIVS",)),  # only removes root's privileges
    Flag("no-rocm", "", False, SAFE, ("ROCM_OFF", "NO_ROCM"), hidden=True),  # drops GPU binds
    # SAFE, resource limits through cgroups: they only take resources away.
    Flag("blkio-weight", "", True, SAFE, ("BLKIO_WEIGHT",)),
    Flag("blkio-weight-device", "", True, SAFE, ("BLKIO_WEIGHT_DEVICE",)),
    Flag("cpu-shares", "", True, SAFE, ("CPU_SHARES",)),
    Flag("cpus", "", True, SAFE, ("CPU_SHARES",)),  # sic: Apptainer gives --cpus the key of --cpu-shares
    Flag("cpuset-cpus", "", True, SAFE, ("CPUSET_CPUS",)),
    Flag("cpuset-mems", "", True, SAFE, ("CPUSET_MEMS",)),
    Flag("memory", "", True, SAFE, ("MEMORY",)),
    Flag("memory-reservation", "", True, SAFE, ("MEMORY_RESERVATION",)),
    Flag("memory-swap", "", True, SAFE, ("MEMORY_SWAP",)),
    Flag("pids-limit", "", True, SAFE, ("PIDS_LIMIT",)),
    # SAFE, how Apptainer gets the image on the host: where it caches or unpacks it (its own private
    # folders), the transport and credentials of a pull, the key of an encrypted image. The image then
    # runs inside the container with the policy's flags; APPTAINER_* variables never enter the container.
    Flag("disable-cache", "", False, SAFE, ("DISABLE_CACHE",)),
    Flag("unsquash", "", False, SAFE, ("UNSQUASH",)),
    Flag("tmpdir", "", True, SAFE, ("TMPDIR",), hidden=True),
    Flag("no-https", "", False, SAFE, ("NOHTTPS", "NO_HTTPS")),
    Flag("nohttps", "", False, SAFE, (), hidden=True),  # deprecated alias of --no-https
    Flag("authfile", "", True, SAFE, ("AUTH_FILE",)),
    Flag("docker-username", "", True, SAFE, ("DOCKER_USERNAME",), hidden=True),
    Flag("docker-password", "", True, SAFE, ("DOCKER_PASSWORD",), hidden=True),
    Flag("docker-host", "", True, SAFE, ("DOCKER_HOST",)),  # the daemon of a docker-daemon: image
    Flag("pem-path", "", True, SAFE, ()),

    # DENIED: host files, folders, devices or programs in the container, writes outside the policy,
    # privileges, other namespaces, or a changed mount set.
    Flag("containlibs", "", True, DENIED, ("CONTAINLIBS",), hidden=True),  # host libraries inside
    Flag("overlay", "o", True, DENIED, ("OVERLAY", "OVERLAYIMAGE")),  # a host folder as a layer of /
    Flag("fusemount", "", True, DENIED, ("FUSESPEC",)),  # runs a host program at container start
    Flag("writable", "w", False, DENIED, ("WRITABLE",)),
    Flag("workdir", "W", True, DENIED, ("WORKDIR",)),  # a host folder for /tmp, /var/tmp (and $HOME)
    Flag("scratch", "S", True, DENIED, ("SCRATCH", "SCRATCHDIR")),  # writable folders the policy does not list
    Flag("no-mount", "", True, DENIED, ("NO_MOUNT",)),  # changes the system mounts the checks reason about
    Flag("underlay", "", False, DENIED, ("UNDERLAY",), hidden=True),  # deprecated
    Flag("rocm", "", False, DENIED, ("ROCM",)),  # host GPU libraries and /dev/kfd, /dev/dri; no policy key
    Flag("nvccli", "", False, DENIED, ("NVCCLI",)),  # runs nvidia-container-cli on the host
    Flag("fakeroot", "f", False, DENIED, ("FAKEROOT",)),
    Flag("add-caps", "", True, DENIED, ("ADD_CAPS",)),
    Flag("allow-setuid", "", False, DENIED, ("ALLOW_SETUID",)),
    Flag("keep-privs", "", False, DENIED, ("KEEP_PRIVS",)),
    Flag("security", "", True, DENIED, ("SECURITY",)),  # seccomp/AppArmor/SELinux profiles, uid/gid
    Flag("apply-cgroups", "", True, DENIED, ("APPLY_CGROUPS",)),  # a TOML of any cgroup setting, devices too
    Flag("oom-kill-disable", "", False, DENIED, ("OOM_KILL_DISABLE",)),  # removes a protection of the host
    Flag("netns-path", "", True, DENIED, ("NETNS_PATH",)),  # joins a host network namespace
    Flag("sharens", "", False, DENIED, ("SHARENS",)),  # shares namespaces with other containers
    Flag("ignore-subuid", "", False, DENIED, ("IGNORE_SUBUID",), hidden=True),
    Flag("ignore-fakeroot-command", "", False, DENIED, ("IGNORE_FAKEROOT_COMMAND",), hidden=True),
    Flag("ignore-userns", "", False, DENIED, ("IGNORE_USERNS",), hidden=True),
    Flag("docker-login", "", False, DENIED, ("DOCKER_LOGIN",)),  # interactive: a batch job would hang
    Flag("passphrase", "", False, DENIED, ()),  # interactive
    Flag("help", "h", False, DENIED, ()),  # cobra's: prints help, exits 0, and the job never runs
)

# `apptainer [global options] exec ...`: not accepted after `exec`, but their variables apply to every run.
GLOBAL_FLAGS = (
    Flag("debug", "d", False, SAFE, ("DEBUG",)),  # messages only
    Flag("nocolor", "", False, SAFE, ("NOCOLOR",)),
    Flag("silent", "s", False, SAFE, ("SILENT",)),
    Flag("quiet", "q", False, SAFE, ("QUIET",)),
    Flag("verbose", "v", False, SAFE, ("VERBOSE",)),
    Flag("config", "c", True, DENIED, ("CONFIG_FILE",)),  # another apptainer.conf: binds, limits, setuid ...
    Flag("build-config", "", False, DENIED, ()),
)

# Variables Apptainer reads directly (env.GetenvLegacy, os.Getenv), not through a flag.
OTHER_ENV = {
    "MESSAGELEVEL": SAFE,  # messages only
    "CACHEDIR": SAFE,  # where pulled and converted images are cached (like --disable-cache, --tmpdir)
    "CONFIGDIR": DENIED,  # moves the instance registry (instance:// images), keys, remotes
    "KEYSDIR": DENIED,
    "SYPGPDIR": DENIED,
}

LONG = {f.name: f for f in EXEC_FLAGS}
SHORT = {f.short: f for f in EXEC_FLAGS if f.short}
SAFE_ENV = frozenset(prefix + key for prefix in ENV_PREFIXES
                     for key in [k for f in EXEC_FLAGS + GLOBAL_FLAGS if f.cls == SAFE for k in f.env]
                     + [k for k, c in OTHER_ENV.items() if c == SAFE])


def _flags_of(word: str) -> list[Flag | None]:
    """The flags one word names; None for a name not in the table. A non-flag word names none."""
    if word.startswith("--") and len(word) > 2:
        return [LONG.get(word[2:].split("=", 1)[0])]
    if word.startswith("-") and len(word) > 1:
        found = []
        for i, letter in enumerate(word[1:], 1):
            flag = SHORT.get(letter)
            found.append(flag)
            if flag is None or flag.value or word[i + 1:i + 2] == "=":
                break  # the rest of the word is the value (or, for an unknown letter, unknown)
        return found
    return []


def unsafe_args(args: Sequence[str]) -> list[str]:
    """The words of an argument list for `apptainer exec` that are not SAFE flags, parsed as pflag does:
    `--flag=v`, `--flag v` (v is taken whatever it looks like), clusters `-abc`, `-Bv`, `-B=v`. A word that
    is no flag (`--`, `-`, an image) would end Apptainer's options: unsafe. So is a value flag at the end
    with no value: it would swallow the next word of the command line (the image, say)."""
    unsafe = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        flags = _flags_of(word)
        refused = not flags or any(f is None or f.cls != SAFE for f in flags)
        if flags and flags[-1] is not None and flags[-1].value:
            inline = "=" in word if word.startswith("--") else len(word) > 1 + len(flags)
            if not inline:
                refused |= i == len(args)
                i += 1  # the next word is this flag's value
        if refused:
            unsafe.append(word)
    return unsafe


def owned(flag: str) -> bool:
    """Whether a word (`--bind`, `--bind=x`, `-B`, `-cB`, `bind`) names a flag the plugin sets itself."""
    named = _flags_of(flag if flag.startswith("-") else "--" + flag)
    return any(f is not None and f.cls == OWNED for f in named)


def unsafe_environment(environ: Mapping[str, str]) -> list[str]:
    """APPTAINER_*/SINGULARITY_* variables that change `apptainer exec` and are not classified SAFE.
    (APPTAINERENV_*/SINGULARITYENV_* set variables inside the container: not these prefixes.)"""
    return sorted(name for name in environ if name.startswith(ENV_PREFIXES) and name not in SAFE_ENV)
