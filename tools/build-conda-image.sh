#!/usr/bin/env bash
# Build a SIF image for `snakemake --sdm conda apptainer` without any conda channel on the network:
# the test image's busybox-static + bash-static, a Python runtime copied from the host, a `conda`
# command at /opt/conda/bin/conda, and local channels inside the image at /opt/channels.
#
#   bash tools/build-conda-image.sh OUT.sif                     # Snakemake creates the envs at run time
#   bash tools/build-conda-image.sh OUT.sif --containerized ENV.yaml...
#                                                               # envs pre-created at /conda-envs/MD5
#                                                               # (what `containerized:` expects)
#   bash tools/build-conda-image.sh OUT.sif --real-conda SRC VERSION [--containerized ENV.yaml...]
#                                                               # conda itself from a source checkout
#
# No conda CLI >= 24.7.1 (the oldest Snakemake 8.30/9.x accept) can be had from PyPI or Debian (PyPI's
# `conda` stops at 4.3.16; Debian 12 and sid package no conda, mamba or micromamba). The `conda` here is a
# small front end that does only what Snakemake asks of conda, with the work done by py-rattler (the
# conda library pixi is built on): repodata, solving, fetching into the package cache, linking with
# prefix replacement, post-link scripts, conda-meta records. It prints `conda 24.7.1`, the conda
# interface level it implements (Snakemake accepts exactly one x.y.z in `conda --version`).
# What it reads and writes, as conda does: condarc files (/etc/conda/.condarc, ~/.condarc, $CONDARC),
# CONDA_PKGS_DIRS (first writable entry) as package cache, `conda config --set` writes ~/.condarc,
# `conda env create` registers the prefix in ~/.conda/environments.txt (best effort).
# Channel names resolve through `channel_alias: file:///opt/channels/` (like a site mirror), so env
# files name conda-forge and bioconda as published workflows do; the packages are made here by hand
# (noarch, .tar.bz2) and indexed with py-rattler.
# --real-conda SRC VERSION installs conda itself instead, from a checkout of its source (conda is pure
# Python; its dependencies come from PyPI, menuinst left out: it is not on PyPI and Linux creations of
# packages without menus do not import it), with the classic solver (libmamba is not on PyPI either).
# Tested with conda 26.7.1.
#
# Needs: root (installs busybox-static, bash-static, python3-venv when missing), apptainer, PyPI
# (py-rattler and PyYAML wheels; pip's cache makes rebuilds offline). ~5 s with that cache; OUT.sif replaced
# atomically.
set -euo pipefail

die() { echo "build-conda-image: $*" >&2; exit 1; }

RATTLER_VERSION=0.28.0
PYYAML_VERSION=6.0.2
(($# >= 1)) || die "usage: $0 OUT.sif [--containerized ENV.yaml...]"
out=$(realpath -m "$1"); shift
envs=()
conda_src=""
conda_version=""
if [[ ${1:-} == --real-conda ]]; then
    (($# >= 3)) || die "--real-conda needs SRC and VERSION"
    conda_src=$(realpath "$2"); conda_version=$3; shift 3
    [[ -f $conda_src/pyproject.toml && -d $conda_src/conda ]] || die "$conda_src is no conda source checkout"
fi
if (($#)); then
    [[ $1 == --containerized ]] || die "unknown argument $1"
    shift
    for f in "$@"; do [[ -f $f ]] || die "no env file $f"; envs+=("$(realpath "$f")"); done
fi

apptainer=$(command -v apptainer || command -v singularity) || die "no apptainer; run tools/install-apptainer.sh first"
[[ $(id -u) == 0 ]] || die "must run as root (copies the host's Python runtime, may apt-get install)"
missing=()
[[ -x /bin/busybox ]] || missing+=(busybox-static)
[[ -x /bin/bash-static ]] || missing+=(bash-static)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
py=$(readlink -f /usr/bin/python3)                       # e.g. /usr/bin/python3.11
pyver=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
stdlib=/usr/lib/python$pyver
[[ -d $stdlib/lib-dynload ]] || die "no $stdlib/lib-dynload"

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "${TMPDIR:-/tmp}/singcontain-conda-image.XXXXXX")
partial=$out.partial.$$
trap 'rm -rf "$work" "$partial"' EXIT
root=$work/rootfs

# 1. The test image's layout (merged /usr), busybox applets, bash.
mkdir -p "$root"/{bin,lib,etc,proc,sys,dev,tmp,root,home,var/tmp,opt,usr} "$root"/{cvmfs,data,scratch}
ln -s ../bin "$root/usr/bin"
ln -s ../lib "$root/usr/lib"
ln -s bin "$root/sbin"
ln -s lib "$root/lib64"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"
cp /bin/busybox "$root/bin/busybox"
cp /bin/bash-static "$root/bin/bash"
(cd "$root/bin" && /bin/busybox --list | perl -nle 'symlink "busybox", $_ unless -e $_ or -l $_')
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
touch "$root/etc/hosts" "$root/etc/resolv.conf" "$root/etc/localtime"
# CA certificates, as every conda base image has: rattler's HTTP client will not start without a store.
mkdir -p "$root/etc/ssl/certs"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"

# 2. Python: the host's interpreter and standard library, and the shared libraries they load.
cp "$py" "$root/bin/python$pyver"
ln -s "python$pyver" "$root/bin/python3"
tar -C /usr/lib --exclude="python$pyver/test" --exclude="python$pyver/idlelib" --exclude="python$pyver/tkinter" \
    --exclude="python$pyver/ensurepip" --exclude="python$pyver/site-packages" --exclude="python$pyver/dist-packages" \
    -cf - "python$pyver" | tar -C "$root/lib" -xf -

# 3. py-rattler and PyYAML, as conda's own library folder.
site=$root/opt/conda/lib/python$pyver/site-packages
/usr/bin/python3 -m venv "$work/venv" >/dev/null
"$work/venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: --target "$site" \
    "py-rattler==$RATTLER_VERSION" "PyYAML==$PYYAML_VERSION" >"$work/pip.log" 2>&1 \
    || { cat "$work/pip.log" >&2; die "pip install py-rattler failed"; }
if [[ -n $conda_src ]]; then
    SETUPTOOLS_SCM_PRETEND_VERSION=$conda_version "$work/venv/bin/pip" install -q --disable-pip-version-check \
        --no-deps --target "$site" "$conda_src" >"$work/pip.log" 2>&1 \
        && "$work/venv/bin/pip" install -q --disable-pip-version-check --target "$site" archspec backports.zstd \
            boltons charset-normalizer conda-package-handling distro frozendict msgpack packaging platformdirs \
            pluggy pycosat requests "ruamel.yaml<0.19" setuptools tqdm truststore >>"$work/pip.log" 2>&1 \
        || { cat "$work/pip.log" >&2; die "pip install of conda from $conda_src failed"; }
fi

# Every library the interpreter, its extension modules and rattler's need, with the loader.
libs=$( { ldd "$py"; find "$root/lib/python$pyver/lib-dynload" "$site" -name '*.so*' -exec ldd {} \; ; } 2>/dev/null \
        | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u)
mkdir -p "$root/lib/x86_64-linux-gnu"
for lib in $libs; do cp -L "$lib" "$root/lib/x86_64-linux-gnu/"; done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib/x86_64-linux-gnu/"
ln -sf x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib/ld-linux-x86-64.so.2"

# 4. The conda front end, its activate script, and the image-wide condarc.
mkdir -p "$root/opt/conda/bin" "$root/opt/conda/conda-meta" "$root/opt/channels"
cat >"$root/opt/conda/bin/conda" <<EOF
#!/bin/python$pyver -I
import os, sys
sys.path.insert(0, "/opt/conda/lib/python$pyver/site-packages")
from conda_front import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code if isinstance(stop.code, int) else (print(stop.code, file=sys.stderr) or 1)
# py-rattler 0.28.0 crashes now and then at interpreter shutdown (SIGSEGV/SIGABRT, 2-3 of 12 runs measured,
# after its work is done): leave without the shutdown.
sys.stdout.flush(); sys.stderr.flush()
os._exit(code or 0)
EOF
cat >"$site/conda_front.py" <<'EOF'
"""The subset of conda's command line that Snakemake uses, on py-rattler."""
import asyncio
import json
import os
import sys

import yaml

VERSION = "24.7.1"
ROOT = "/opt/conda"
PLATFORM = "linux-64"


def condarc_files():
    home = os.path.expanduser("~")
    files = ["/etc/conda/.condarc", f"{ROOT}/.condarc", f"{home}/.config/conda/.condarc", f"{home}/.condarc"]
    return files + ([os.environ["CONDARC"]] if os.environ.get("CONDARC") else [])


def settings():
    merged = {}
    for path in condarc_files():
        try:
            with open(path) as f:
                merged.update(yaml.safe_load(f) or {})
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            pass
    for key in ("channel_alias", "channel_priority"):
        if os.environ.get(f"CONDA_{key.upper()}"):
            merged[key] = os.environ[f"CONDA_{key.upper()}"]
    return merged


def pkgs_dirs(config):
    listed = os.environ.get("CONDA_PKGS_DIRS")
    dirs = listed.split(",") if listed else list(config.get("pkgs_dirs") or [])
    return dirs + [f"{ROOT}/pkgs", os.path.expanduser("~/.conda/pkgs")]


def writable_pkgs_dir(config):
    for d in pkgs_dirs(config):
        try:
            os.makedirs(d, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            pass
    raise SystemExit(f"NotWritableError: none of the package caches is writable: {pkgs_dirs(config)}")


def info(args):
    config = settings()
    data = {"conda_version": VERSION, "conda_prefix": ROOT, "root_prefix": ROOT, "platform": PLATFORM,
            "channels": config.get("channels", []), "channel_alias": config.get("channel_alias"),
            "pkgs_dirs": pkgs_dirs(config), "envs_dirs": [f"{ROOT}/envs"], "config_files": condarc_files()}
    print(json.dumps(data, indent=2) if "--json" in args else "\n".join(f"{k}: {v}" for k, v in data.items()))


def config_cmd(args):
    rc = os.path.expanduser("~/.condarc")  # conda's default --file: the user's condarc
    if "--file" in args:
        rc = args[args.index("--file") + 1]
    if "--set" in args:
        key, value = args[args.index("--set") + 1: args.index("--set") + 3]
        try:
            with open(rc) as f:
                current = yaml.safe_load(f) or {}
        except FileNotFoundError:
            current = {}
        current[key] = value
        with open(rc, "w") as f:  # fails where the home is read-only, as conda's does
            yaml.safe_dump(current, f)
        return 0
    if "--get" in args:
        key = args[args.index("--get") + 1]
        value = settings().get(key)
        print(json.dumps({"get": {key: value} if value is not None else {}, "rc_path": rc, "success": True}))
        return 0
    raise SystemExit(f"conda config {' '.join(args)}: not supported here")


def option(args, *names):
    for name in names:
        if name in args:
            return args[args.index(name) + 1]
    return None


def env_create(args):
    import rattler

    env_file, prefix = option(args, "--file", "-f"), option(args, "--prefix", "-p")
    if not env_file or not prefix:
        raise SystemExit("conda env create: --file and --prefix are required here")
    with open(env_file) as f:
        spec = yaml.safe_load(f) or {}
    deps = spec.get("dependencies") or []
    if any(not isinstance(d, str) for d in deps):
        raise SystemExit(f"{env_file}: pip dependencies are not supported here")
    config = settings()
    names = [c for c in spec.get("channels") or config.get("channels") or ["conda-forge"] if c != "nodefaults"]
    channel_config = rattler.ChannelConfig(channel_alias=config.get("channel_alias", "https://conda.anaconda.org/"))
    channels = [rattler.Channel(c, channel_config) for c in names]
    cache = writable_pkgs_dir(config)
    quiet = "--quiet" in args or "-q" in args

    async def create():
        gateway = rattler.Gateway(cache_dir=os.path.join(cache, "cache"))
        records = await rattler.solve(channels, deps, gateway=gateway, platforms=[PLATFORM, "noarch"],
                                      virtual_packages=rattler.VirtualPackage.detect(),
                                      channel_priority=rattler.ChannelPriority.Strict)
        await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False,
                              execute_link_scripts=True)
        return records

    records = asyncio.run(create())
    if not quiet:
        for r in records:
            print(f"  {r.name.normalized} {r.version} {r.build} {r.channel}")
    with open(os.path.join(prefix, "conda-meta", "history"), "a") as f:
        f.write(f"# cmd: conda env create --file {env_file} --prefix {prefix}\n")
    try:  # conda registers every environment it creates; a read-only home only loses the entry
        os.makedirs(os.path.expanduser("~/.conda"), exist_ok=True)
        with open(os.path.expanduser("~/.conda/environments.txt"), "a") as f:
            f.write(prefix + "\n")
    except OSError:
        print("Unable to register environment. Path not writable or missing.", file=sys.stderr)
    print(f"done: {prefix}")
    return 0


def clean(args):
    """`conda clean -y --tarballs [--packages]`: drop downloaded archives (and extracted packages)."""
    import shutil

    for d in pkgs_dirs(settings()):
        if not os.path.isdir(d):
            continue
        for entry in os.listdir(d):
            path = os.path.join(d, entry)
            if entry.endswith((".tar.bz2", ".conda")) and "--tarballs" in args:
                os.remove(path)
            elif "--packages" in args and os.path.isdir(path) and entry != "cache":
                shutil.rmtree(path, ignore_errors=True)
    return 0


def main(argv):
    if not argv or argv[0] in ("--version", "-V"):
        print(f"conda {VERSION}")
        return 0
    cmd, args = argv[0], argv[1:]
    if cmd == "info":
        return info(args) or 0
    if cmd == "config":
        return config_cmd(args)
    if cmd == "clean":
        return clean(args)
    if cmd == "env" and args[:1] == ["create"]:
        return env_create(args[1:])
    print(f"conda {' '.join(argv)}: not supported here (this conda does only what Snakemake needs)",
          file=sys.stderr)
    return 2
EOF
cat >"$root/opt/conda/bin/activate" <<'EOF'
# Sourced by Snakemake's jobs as `source /opt/conda/bin/activate PREFIX; CMD` (POSIX sh and bash).
_sc_prefix=${1:-/opt/conda}
if [ -d "$_sc_prefix/conda-meta" ]; then
    export CONDA_PREFIX="$_sc_prefix" CONDA_DEFAULT_ENV="$_sc_prefix" CONDA_SHLVL=1 CONDA_EXE=/opt/conda/bin/conda
    PATH="$_sc_prefix/bin:$PATH"; export PATH
    for _sc_f in "$_sc_prefix"/etc/conda/activate.d/*.sh; do
        if [ -f "$_sc_f" ]; then . "$_sc_f"; fi
    done
else
    echo "activate: $_sc_prefix is not a conda environment" >&2
    false
fi
unset _sc_prefix _sc_f
EOF
if [[ -n $conda_src ]]; then
    # Real conda's root prefix is its Python's sys.prefix, /usr here: Snakemake sources /usr/bin/activate.
    cat >"$root/opt/conda/bin/conda" <<EOF
#!/bin/python$pyver -I
import sys
sys.path.insert(0, "/opt/conda/lib/python$pyver/site-packages")
from conda.cli.main import main
if __name__ == "__main__":  # conda's CUDA detection starts a process that imports this file again
    sys.exit(main())
EOF
    mkdir -p "$root/usr/conda-meta"
    ln -s /opt/conda/bin/activate "$root/bin/activate"
fi
chmod 755 "$root/opt/conda/bin/conda"
ln -s /opt/conda/bin/conda "$root/bin/conda"
mkdir -p "$root/etc/conda"
cat >"$root/etc/conda/.condarc" <<'EOF'
channel_alias: file:///opt/channels/
channels: [conda-forge]
channel_priority: strict
solver: classic
EOF

# 5. Local channels: small noarch packages made by hand, indexed by py-rattler.
PYTHONPATH=$site "$work/venv/bin/python" - "$root/opt/channels" <<'EOF'
"""Three noarch: generic packages in .tar.bz2 format (info/index.json, info/paths.json, info/files,
info/has_prefix) in two channels; sc-greet depends on sc-lib across channels, carries a prefix
placeholder (rewritten at install) and a post-link script."""
import asyncio, hashlib, io, json, os, sys, tarfile
import rattler
from rattler.index import index_fs

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
PACKAGES = [
    ("conda-forge", "sc-lib", "1.0.0", [], {
        "share/sc-lib/greeting.txt": "hello",
    }),
    ("conda-forge", "sc-count", "0.3.0", [], {
        "bin/sc-count": "#!/bin/sh\n# counts lines, words and bytes like wc, named after the tool\nwc \"$@\"\n",
    }),
    ("bioconda", "sc-greet", "1.2.0", ["sc-lib >=1.0"], {
        "bin/sc-greet": f"#!/bin/sh\nprefix={PLACEHOLDER}\n"
                        "echo \"$(cat \"$prefix/share/sc-lib/greeting.txt\") $1 from sc-greet in $prefix\"\n",
        "bin/.sc-greet-post-link.sh": "#!/bin/sh\nmkdir -p \"$PREFIX/etc/sc-greet\"\n"
                                      "echo \"post-link ran for $PREFIX\" > \"$PREFIX/etc/sc-greet/linked\"\n",
    }),
]


def add(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1700000000
    tar.addfile(info, io.BytesIO(data))


root = sys.argv[1]
for channel, name, version, depends, files in PACKAGES:
    subdir = os.path.join(root, channel, "noarch")
    os.makedirs(subdir, exist_ok=True)
    index = {"name": name, "version": version, "build": "0", "build_number": 0, "depends": depends,
             "noarch": "generic", "subdir": "noarch", "license": "MIT", "timestamp": 1700000000000}
    paths = []
    with tarfile.open(os.path.join(subdir, f"{name}-{version}-0.tar.bz2"), "w:bz2") as tar:
        for path, text in files.items():
            data = text.encode()
            entry = {"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
                     "size_in_bytes": len(data)}
            if PLACEHOLDER in text:
                entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
            paths.append(entry)
            add(tar, path, data, 0o755 if path.startswith("bin/") else 0o644)
        has_prefix = "".join(f"{PLACEHOLDER} text {p['_path']}\n" for p in paths if "prefix_placeholder" in p)
        add(tar, "info/index.json", json.dumps(index, indent=1).encode())
        add(tar, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}, indent=1).encode())
        add(tar, "info/files", "".join(p["_path"] + "\n" for p in paths).encode())
        if has_prefix:
            add(tar, "info/has_prefix", has_prefix.encode())
for channel in sorted({p[0] for p in PACKAGES}):
    asyncio.run(index_fs(os.path.join(root, channel), write_zst=False, write_shards=False))
    if not os.path.exists(os.path.join(root, channel, "noarch", "repodata.json")):
        sys.exit(f"indexing {channel} wrote no repodata.json")
sys.stdout.flush()
os._exit(0)  # py-rattler may crash at interpreter shutdown (see the conda command above)
EOF
find "$root/opt/channels" -name '.cache' -prune -exec rm -rf {} +

# 6. Environments built in, for `containerized:` (Snakemake looks for /conda-envs/<md5 of the env file>).
for env in "${envs[@]}"; do
    md5=$(md5sum "$env" | cut -d' ' -f1)
    mkdir -p "$root/conda-envs/$md5"
    cp "$env" "$root/conda-envs/$md5/environment.yaml"
    # In the image itself (its /dev, /proc and a private /tmp for the package cache), as root.
    "$apptainer" -s exec --writable --contain --no-home "$root" conda env create --quiet \
        --file "/conda-envs/$md5/environment.yaml" --prefix "/conda-envs/$md5" >"$work/env.log" 2>&1 \
        || { cat "$work/env.log" >&2; die "creating the environment of $env in the image failed"; }
done
rm -rf "$root/opt/conda/pkgs" "$root/root/.conda"   # the package cache and registry of that build step

# Uncompressed (as tools/build-test-image.sh): no unpacking at every start of a job, and a build in a
# few seconds instead of mksquashfs compressing ~150 MB (9 of the build's 15 s, measured).
"$apptainer" -s build -F --mksquashfs-args "-noI -noD -noF -noX" "$partial" "$root" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; die "apptainer build failed"; }
chmod 644 "$partial"
mv -f "$partial" "$out"
echo "built $out ($(du -h "$out" | cut -f1))"
