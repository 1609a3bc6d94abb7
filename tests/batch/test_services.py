"""tools/slurm.sh on a machine whose packages' services already run, and tools/debian-mirror.sh.

The service test runs in private mount/network/PID namespaces, so the "package services" it starts
(munged as munge.service starts it, slurmctld and slurmd as their units do, on the default ports) and
the Slurm that tools/slurm.sh starts never meet the machine's own Slurm (the one the other batch tests
use): all of it ends with the namespace."""

import os
import shutil
import subprocess

import pytest

from support import ROOT

# Inside the namespaces: $1 = repository, $2 = a scratch folder. Prints "key: value" lines.
SCENARIO = r"""
set -euo pipefail
repo=$1; work=$2; services=$3   # "services": start the packages' services first; "none": a bare machine
ip link set lo up
# Slurm resolves with AI_ADDRCONFIG, which needs one address outside 127/8 to exist: one from the range kept
# for documentation (RFC 5737), on this namespace's own loopback; all traffic goes to 127.0.0.1.
ip addr add 192.0.2.1/32 dev lo
for d in /run/munge /var/lib/munge /var/log/munge /etc/slurm; do mkdir -p "$d"; mount -t tmpfs -o mode=755 tmpfs "$d"; done
chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 700 /var/lib/munge /var/log/munge
if [[ $services == services ]]; then
# munged as munge.service starts it: user munge, Debian's default paths, daemonizing.
runuser -u munge -- /usr/sbin/munged
node=$(hostname -s)
mkdir -p "$work/pkg"
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=pkgcluster
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$work/pkg
SlurmdSpoolDir=$work/pkg/spool
SlurmctldPidFile=$work/pkg/slurmctld.pid
SlurmdPidFile=$work/pkg/slurmd.pid
SlurmctldLogFile=$work/pkg/slurmctld.log
SlurmdLogFile=$work/pkg/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN
PartitionName=pkg Nodes=$node Default=YES State=UP
CONF
cp /etc/slurm/slurm.conf "$work/pkg.conf"
# slurmctld/slurmd as their units start them (Type=simple, in the foreground, on 6817/6818).
(cd / && setsid /usr/sbin/slurmctld -D -s </dev/null >/dev/null 2>&1 &)
(cd / && setsid /usr/sbin/slurmd -D -s </dev/null >/dev/null 2>&1 &)
source "$repo/tools/slurm.sh"   # its functions only (listener, pid_named)
show() {  # name pid: one line "name pid uid cmdline"
    echo "$1 $2 $(awk '/^Uid:/ {print $2}' /proc/$2/status) $(tr '\0' ' ' </proc/$2/cmdline)"
}
snapshot() {
    show munged "$(pid_named munged)"
    for _ in $(seq 100); do [[ -n $(listener 6817) && -n $(listener 6818) ]] && break; sleep 0.1; done
    show slurmctld "$(listener 6817)"; show slurmd "$(listener 6818)"
}
fi
[[ $services == services ]] && for _ in $(seq 50); do timeout 5 sinfo -h -o %P 2>/dev/null | grep -q pkg && break; sleep 0.1; done
[[ $services == services ]] && snapshot | sed 's/^/before: /'
export SINGCONTAIN_SLURM_DIR=$work/ours
mkdir -p "$SINGCONTAIN_SLURM_DIR"
t=$(date +%s.%N); bash "$repo/tools/slurm.sh" up; echo "time-up: $(echo "$(date +%s.%N) - $t" | bc)"
echo "sinfo: $(sinfo -h -o '%P %t')"
echo "job: $(timeout 30 srun -p main -N1 echo job-ran 2>&1)"
t=$(date +%s.%N); bash "$repo/tools/slurm.sh" down; echo "time-down: $(echo "$(date +%s.%N) - $t" | bc)"
[[ $services == services ]] && snapshot | sed 's/^/after: /'
[[ $services == services ]] && echo "conf-same: $(cmp -s /etc/slurm/slurm.conf "$work/pkg.conf" && echo yes || echo no)"
echo "etc-slurm: $(ls -A /etc/slurm | tr '\n' ' ')"
echo "procs: $(cat /proc/[0-9]*/comm | sort | tr '\n' ' ')"
[[ $services == services ]] && echo "sinfo-after: $(timeout 10 sinfo -h -o %P 2>&1)"
exit 0
"""


def scenario(tmp_path, services="services") -> dict[str, list[str]]:
    run = subprocess.run(["unshare", "--mount", "--uts", "--net", "--pid", "--fork", "--mount-proc",
                          "bash", "-c", SCENARIO, "scenario", str(ROOT), str(tmp_path), services],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        key, _, value = line.partition(": ")
        lines.setdefault(key, []).append(value.strip())
    return lines


needs_namespaces = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, daemons)"),
    pytest.mark.skipif(not all(shutil.which(c) for c in ("unshare", "ip", "munged", "slurmctld", "slurmd", "srun")),
                       reason="needs unshare, ip and the munge/Slurm packages (bash tools/slurm.sh up installs them)"),
]


@needs_namespaces[0]
@needs_namespaces[1]
def test_slurm_up_and_down_on_a_bare_machine_leave_nothing(tmp_path):
    out = scenario(tmp_path, "none")
    assert out["sinfo"] == ["main* idle"] and out["job"] == ["job-ran"], out
    assert set(out["procs"][0].split()) <= {"bash", "cat", "sort", "tr"}, out   # no daemon of ours is left
    assert out["etc-slurm"] == [""], out   # nor our config links


@needs_namespaces[0]
@needs_namespaces[1]
def test_slurm_up_and_down_leave_the_package_services_as_they_were(tmp_path):
    out = scenario(tmp_path)
    before = {line.split()[0]: line for line in out["before"]}
    after = {line.split()[0]: line for line in out["after"]}
    assert set(before) == {"munged", "slurmctld", "slurmd"}, out
    # The service's munged is reused, never restarted: same PID, user munge.
    assert after["munged"] == before["munged"], out
    # slurmctld and slurmd were stopped for the test Slurm and run again with the same command line and
    # user (the PID differs: "name pid uid cmdline").
    for name in ("slurmctld", "slurmd"):
        assert after[name].split()[2:] == before[name].split()[2:], out
        assert after[name].split()[1] != before[name].split()[1], out
    assert out["sinfo"] == ["main* idle"] and out["job"] == ["job-ran"], out
    assert out["conf-same"] == ["yes"] and out["etc-slurm"] == ["slurm.conf"], out   # their config is back
    assert out["sinfo-after"] == ["pkg*"], out   # and their slurmctld answers with it
    # Nothing of ours is left: only the namespace's shell, the services and what reads /proc.
    procs = set(out["procs"][0].split())
    assert procs <= {"bash", "cat", "sort", "tr", "munged", "slurmctld", "slurmd", "slurmscriptd"}, out


def mirror(root, env_root=True):
    env = dict(os.environ, SINGCONTAIN_APT_ROOT=str(root))
    return subprocess.run(["bash", str(ROOT / "tools/debian-mirror.sh")], capture_output=True, text=True, env=env)


def apt_root(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        path = tmp_path / "etc/apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    return tmp_path


CLASSIC = """\
# the site's mirror; cdrom, security, updates and other vendors' archives come first on purpose
deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://security.example.org/debian-security bookworm-security main
deb http://updates.example.org/debian bookworm-updates main
deb https://vendor.example.org/linux/debian bookworm stable
deb-src http://src.example.org/debian bookworm main
deb [ arch=amd64 ] http://mirror.example.org/debian/ bookworm main contrib  # trailing comment
"""

DEB822 = """\
Types: deb deb-src
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main
Enabled: no

# the site's mirror
Types: deb
URIs: http://mirror822.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://mirror822.example.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_the_classic_format(tmp_path):
    run = mirror(apt_root(tmp_path, {"sources.list": CLASSIC}))
    assert (run.returncode, run.stdout) == (0, "http://mirror.example.org/debian\n"), run


def test_mirror_from_the_deb822_format(tmp_path):
    run = mirror(apt_root(tmp_path, {"sources.list.d/debian.sources": DEB822}))
    assert (run.returncode, run.stdout) == (0, "http://mirror822.example.org/debian\n"), run


def test_mirror_of_this_systems_codename_only_in_updates(tmp_path):
    # A release the script has never heard of (named in os-release); only its -updates suite is listed.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('VERSION_CODENAME="zeta"\n')
    run = mirror(apt_root(tmp_path, {"sources.list.d/a.list": "deb http://new.example.org/debian zeta-updates main\n"}))
    assert (run.returncode, run.stdout) == (0, "http://new.example.org/debian\n"), run


def test_mirror_with_both_formats_prefers_the_main_suite_over_updates(tmp_path):
    files = {"sources.list": "deb http://updates.example.org/debian bookworm-updates main\n",
             "sources.list.d/debian.sources": DEB822}
    run = mirror(apt_root(tmp_path, files))
    assert (run.returncode, run.stdout) == (0, "http://mirror822.example.org/debian\n"), run


@pytest.mark.parametrize("files", [
    {},
    {"sources.list": "deb http://security.example.org/debian-security bookworm-security main\n"
                     "deb https://vendor.example.org/apt cloud-sdk main\n"},
    {"sources.list.d/debian.sources": DEB822.split("\n\n")[0] + "\n"},   # only a disabled entry
], ids=["no sources", "security and other vendors only", "disabled only"])
def test_no_mirror_is_one_clear_message(tmp_path, files):
    run = mirror(apt_root(tmp_path, files))
    assert run.returncode == 1 and run.stdout == "", run
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "no Debian archive found" in lines[0] and "apt sources" in lines[0], run
