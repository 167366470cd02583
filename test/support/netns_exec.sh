#!/bin/sh
# netns_exec.sh NETNS CGROUP_DIR PROGRAM ARGS...
#
# Runs PROGRAM in the network namespace NETNS (made by `ip netns add`), in a mount
# namespace of its own where /sys is that network namespace's sysfs (so /sys/class/net
# lists its links, as a port program on its own bridge needs) and /sys/fs/cgroup is still
# the machine's cgroup hierarchy (so liblxc finds it). `ip netns exec` would mount the
# sysfs too, but over what is mounted below /sys: the cgroup hierarchies, and on a host
# with AppArmor the securityfs through which liblxc confines each container (hidden, every
# start failed in the stock Debian VM: "Incomplete AppArmor support in your kernel"). The
# one recipe of both labs: the Elixir cluster lab (test/support/cluster_lab.ex) and the
# port's own (Lab::port, native/ampule_port/tests/common/lab.rs). CGROUP_DIR is an empty
# directory the caller made and removes: a tmpfs private to the new mount namespace is
# mounted there, and the hierarchies and securityfs are bound aside into it while the
# sysfs is mounted.
#
# Everything PROGRAM starts (a BEAM, its epmd, its port program, containers) stays in
# both namespaces; mounts made there are private to them and go with them.
set -e
ns=$1
cg=$2
shift 2
exec unshare -m --propagation private /bin/sh -c '
  set -e
  ns=$1; cg=$2; shift 2
  mount -t tmpfs aside "$cg"
  mkdir "$cg/cgroup" "$cg/security"
  mount --rbind /sys/fs/cgroup "$cg/cgroup"
  if mountpoint -q /sys/kernel/security; then mount --rbind /sys/kernel/security "$cg/security"; fi
  exec nsenter --net="/var/run/netns/$ns" /bin/sh -c "
    set -e
    mount -t sysfs sysfs /sys
    mount --rbind \"\$0/cgroup\" /sys/fs/cgroup
    if mountpoint -q \"\$0/security\"; then mount --rbind \"\$0/security\" /sys/kernel/security; fi
    umount -l \"\$0\"
    exec \"\$@\"
  " "$cg" "$@"
' netns_exec "$ns" "$cg" "$@"
